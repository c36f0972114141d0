"""KL-regularised convolutional autoencoder: the first stage of latent diffusion (Rombach et al. 2022).

Encoder: 3x3 conv, then per level a residual block and a stride-2 conv (three levels: 8x down),
a middle residual block, GroupNorm + SiLU + 3x3 conv to the mean and log-variance of
``z_channels`` latent channels. Decoder: the mirror, with nearest up-sampling + 3x3 conv.
Loss: L1 in pixels, an L1 on log-amplitude spectra (so the decoder is pushed to paint
texture, not only the blur L1 favours), and ``kl_weight`` x KL(q(z|x) || N(0, I)) per latent
element (1e-6, as in the latent-diffusion design: the KL only keeps the latent scale in check).

As a generator it is image-to-image: ``generate`` passes real photographs through
encode -> decode (the latent mean), so a corpus of its outputs is "a real photo passed through
a latent decoder" -- real and generated differ only by the decoder's traces. Fully
convolutional: trained on 128 px crops, it reads any size that is a multiple of 8.

>>> ae = KLAutoencoder(image_size=16, widths=(8, 8, 8), z_channels=4)
>>> import torch
>>> mean, logvar = ae.encode(torch.zeros(1, 3, 24, 32))
>>> tuple(mean.shape), tuple(ae.decode(mean).shape)
((1, 4, 3, 4), (1, 3, 24, 32))
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .base import GeneratorError, from_unit, register_generator, to_unit
from .image_to_image import ImageToImage


def _norm(c: int) -> nn.GroupNorm:
    return nn.GroupNorm(math.gcd(8, c), c)


class ResBlock(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.block = nn.Sequential(_norm(cin), nn.SiLU(), nn.Conv2d(cin, cout, 3, 1, 1),
                                   _norm(cout), nn.SiLU(), nn.Conv2d(cout, cout, 3, 1, 1))
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x):
        return self.block(x) + self.skip(x)


def spectral_l1(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """L1 between log-amplitude spectra: penalises missing high-frequency energy (blur)."""
    fa = torch.fft.rfft2(a, norm="ortho").abs()
    fb = torch.fft.rfft2(b, norm="ortho").abs()
    return F.l1_loss(torch.log1p(fa), torch.log1p(fb))


@register_generator("autoencoder", "KL-regularised conv autoencoder, 8x down (latent-diffusion first stage); image-to-image reconstruction")
class KLAutoencoder(ImageToImage):
    version = 1
    size_multiple = 8

    def __init__(self, *, image_size: int = 128, num_classes: int = 0, z_channels: int = 4,
                 widths: tuple = (32, 64, 128), kl_weight: float = 1e-6, spectral_weight: float = 0.1,
                 lr: float = 3e-4):
        widths = tuple(int(w) for w in widths)
        if len(widths) != 3:
            raise GeneratorError(f"widths must name 3 levels (8x down-sampling), got {list(widths)}")
        if num_classes:
            raise GeneratorError("the autoencoder is unconditional")
        super().__init__(image_size=image_size, num_classes=0, z_channels=z_channels, widths=list(widths),
                         kl_weight=kl_weight, spectral_weight=spectral_weight, lr=lr)
        self.z_channels, self.kl_weight, self.spectral_weight = z_channels, kl_weight, spectral_weight
        enc: list[nn.Module] = [nn.Conv2d(3, widths[0], 3, 1, 1)]
        c = widths[0]
        for w in widths:
            enc += [ResBlock(c, w), nn.Conv2d(w, w, 3, 2, 1)]
            c = w
        enc += [ResBlock(c, c), _norm(c), nn.SiLU(), nn.Conv2d(c, 2 * z_channels, 3, 1, 1)]
        self.encoder = nn.Sequential(*enc)
        dec: list[nn.Module] = [nn.Conv2d(z_channels, c, 3, 1, 1), ResBlock(c, c)]
        for w in reversed(widths):
            dec += [ResBlock(c, w), nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(w, w, 3, 1, 1)]
            c = w
        dec += [_norm(c), nn.SiLU(), nn.Conv2d(c, 3, 3, 1, 1)]
        self.decoder = nn.Sequential(*dec)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Pixels in [-1, 1] (sides multiples of 8) -> latent mean and log-variance."""
        if x.shape[-1] % 8 or x.shape[-2] % 8:
            raise GeneratorError(f"autoencoder input sides must be multiples of 8, got {tuple(x.shape[-2:])}")
        mean, logvar = self.encoder(x).chunk(2, 1)
        return mean, logvar.clamp(-30, 20)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)

    def configure_optimizers(self, lr=None):
        return {"ae": self._adam(self.parameters(), lr or self.config["lr"], betas=(0.5, 0.9))}

    def training_step(self, x, y, optimizers, step):
        x = to_unit(x)
        mean, logvar = self.encode(x)
        z = mean + torch.randn_like(mean) * (0.5 * logvar).exp()
        rec = self.decode(z)
        l1 = F.l1_loss(rec, x)
        spec = spectral_l1(rec, x)
        kl = 0.5 * (mean.pow(2) + logvar.exp() - 1 - logvar).mean()
        loss = l1 + self.spectral_weight * spec + self.kl_weight * kl
        opt = optimizers["ae"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return {"loss": loss.item(), "l1": l1.item(), "spectral": spec.item(), "kl": kl.item()}

    @torch.no_grad()
    def transform(self, x, masks=None):
        mean, _ = self.encode(to_unit(x))
        return from_unit(self.decode(mean))

    @torch.no_grad()
    def reconstruct(self, image: np.ndarray) -> np.ndarray:
        """One ``H x W x 3`` uint8 image through encode -> decode, same size out (sides padded by
        reflection to a multiple of 8 and cropped back, so the output stays pixel-aligned)."""
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise GeneratorError(f"expected an H x W x 3 uint8 image, got {image.shape} {image.dtype}")
        h, w = image.shape[:2]
        x = torch.from_numpy(np.array(image, copy=True)).permute(2, 0, 1)[None].to(self.device)
        ph, pw = (-h) % 8, (-w) % 8
        if ph or pw:
            x = F.pad(x.float(), (0, pw, 0, ph), mode="reflect" if min(h, w) > 8 else "replicate").to(torch.uint8)
        return self.transform(x)[0, :h, :w].numpy()
