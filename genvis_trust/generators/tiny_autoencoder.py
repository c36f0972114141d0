"""Tiny latent autoencoders: published 8x first-stage encoders/decoders, for aligned reconstructions.

A latent diffusion model never paints pixels itself: its decoder does, and the decoder leaves
the same traces on every image it makes. Passing a *real* photograph through encode -> decode
gives an image that differs from the original only by those traces (the AlignedForensics
recipe, Rajan et al., ICLR 2025): the cleanest "generated" class a detector can learn from.

The network layout is Ollin Boer Bohan's TAESD (MIT licence): a 3-conv residual block,
three stride-2 stages (8x down-sampling), a tanh clamp on the latents, nearest up-sampling in
the decoder. The FLUX.2 variant adds a global-pooling/GroupNorm branch in the
lowest-resolution blocks. Weights are converted to safetensors by
``scripts/convert_taesd.py`` and bundled under ``assets/autoencoders/<name>``; nothing here
unpickles.

>>> ae = TinyAutoencoder(latent_channels=4)
>>> import torch
>>> ae.decode(ae.encode(torch.rand(1, 3, 24, 40))).shape
torch.Size([1, 3, 24, 40])
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

ASSETS = Path(__file__).resolve().parent.parent / "assets" / "autoencoders"
FAMILY = "tiny-autoencoder"


def _conv(cin: int, cout: int, **kw) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, padding=1, **kw)


class _TanhClamp(nn.Module):
    """Soft-limit latents to [-3, 3] (what the decoder was trained to read)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(x / 3) * 3


class _Block(nn.Module):
    def __init__(self, cin: int, cout: int, global_branch: bool = False):
        super().__init__()
        self.conv = nn.Sequential(_conv(cin, cout), nn.ReLU(), _conv(cout, cout), nn.ReLU(), _conv(cout, cout))
        self.skip = nn.Conv2d(cin, cout, 1, bias=False) if cin != cout else nn.Identity()
        self.fuse = nn.ReLU()
        # The FLUX.2 distillation needed image-wide statistics in the deepest blocks.
        self.pool = (
            nn.Sequential(
                nn.Conv2d(cin, cin * 4, 1, bias=False),
                nn.GroupNorm(4, cin * 4),
                nn.ReLU(inplace=True),
                nn.Conv2d(cin * 4, cin, 1, bias=False),
            )
            if global_branch
            else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pool is not None:
            x = x + self.pool(x)
        return self.fuse(self.conv(x) + self.skip(x))


def _encoder(latent: int, gb: bool, w: int = 64) -> nn.Sequential:
    layers: list[nn.Module] = [_conv(3, w), _Block(w, w)]
    for stage in range(3):
        layers.append(_conv(w, w, stride=2, bias=False))
        layers += [_Block(w, w, gb and stage == 2) for _ in range(3)]
    layers.append(_conv(w, latent))
    return nn.Sequential(*layers)


def _decoder(latent: int, gb: bool, w: int = 64) -> nn.Sequential:
    layers: list[nn.Module] = [_TanhClamp(), _conv(latent, w), nn.ReLU()]
    for stage in range(3):
        layers += [_Block(w, w, gb and stage == 0) for _ in range(3)]
        layers += [nn.Upsample(scale_factor=2), _conv(w, w, bias=False)]
    layers += [_Block(w, w), _conv(w, 3)]
    return nn.Sequential(*layers)


class TinyAutoencoder(nn.Module):
    """Images in [0, 1], ``N x 3 x H x W`` -> latents ``N x C x H/8 x W/8`` -> images."""

    def __init__(self, latent_channels: int = 4, global_branch: bool = False):
        super().__init__()
        self.config = {"latent_channels": latent_channels, "global_branch": global_branch}
        self.encoder = _encoder(latent_channels, global_branch)
        self.decoder = _decoder(latent_channels, global_branch)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z).clamp(0, 1)

    @torch.no_grad()
    def reconstruct(self, image: np.ndarray) -> np.ndarray:
        """One ``H x W x 3`` uint8 image through encode -> decode, same size out.

        Sides are padded (reflect) up to a multiple of 8 and cropped back, so the output is
        pixel-aligned with the input.
        """
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"expected an H x W x 3 uint8 image, got {image.shape} {image.dtype}")
        h, w = image.shape[:2]
        dev = next(self.parameters()).device
        x = torch.from_numpy(np.array(image, copy=True)).to(dev).permute(2, 0, 1)[None].float() / 255.0
        ph, pw = (-h) % 8, (-w) % 8
        if ph or pw:
            x = torch.nn.functional.pad(x, (0, pw, 0, ph), mode="reflect" if min(h, w) > 8 else "replicate")
        y = self.decode(self.encode(x))[..., :h, :w]
        return (y[0].permute(1, 2, 0) * 255.0).round().clamp(0, 255).to(torch.uint8).cpu().numpy()


def list_autoencoders() -> dict[str, Path]:
    """Bundled autoencoders: ``{name: folder}``."""
    if not ASSETS.is_dir():
        return {}
    return {p.name: p for p in sorted(ASSETS.iterdir()) if (p / "config.json").is_file()}


def save_autoencoder(ae: TinyAutoencoder, path: str | os.PathLike, card: dict | None = None) -> str:
    from genvis_trust.artifacts import save_artifact

    # fp16 on disk: the published weights are fp16, so nothing is lost and the asset is half the size
    tensors = {k: v.half() if v.is_floating_point() else v for k, v in ae.state_dict().items()}
    return save_artifact(path, kind="autoencoder", family=FAMILY, config=ae.config, tensors=tensors, card=card)


def load_autoencoder(name_or_path: str | os.PathLike = "taef2", device: str = "auto") -> TinyAutoencoder:
    """A bundled autoencoder by name, or an artifact folder by path."""
    from genvis_trust.artifacts import ArtifactError, load_artifact
    from genvis_trust.devices import resolve_device

    bundled = list_autoencoders()
    path = bundled.get(str(name_or_path)) or Path(name_or_path)
    if not path.is_dir():
        raise ArtifactError(f"no autoencoder named {str(name_or_path)!r} (bundled: {', '.join(bundled) or 'none'})")
    art = load_artifact(path, kind="autoencoder", family=FAMILY)
    ae = TinyAutoencoder(**art.config)
    ae.load_state_dict(art.tensors, strict=True)
    ae.card = art.card
    ae.sha256 = art.sha256
    return ae.to(resolve_device(device)).eval()


__all__ = ["TinyAutoencoder", "list_autoencoders", "load_autoencoder", "save_autoencoder"]
