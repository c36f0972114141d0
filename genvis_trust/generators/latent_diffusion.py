"""Latent diffusion (Rombach et al. 2022): the DDPM denoiser run in an autoencoder's latent space.

A trained :class:`~genvis_trust.generators.autoencoder.KLAutoencoder` (the first stage) maps a
256 x 256 photograph to a 4 x 32 x 32 latent; the denoiser (this toolkit's DDPM U-Net, v
prediction, EMA, DDIM or ancestral sampling) learns the distribution of those latents, and the
frozen decoder paints the pixels of every sample. Latents are multiplied by ``latent_scale``
(1 / their standard deviation on the first training batch, as Stable Diffusion's 0.18215 was
fitted) so the diffusion sees unit variance.

The artifact is self-contained: ``model.safetensors`` holds the denoiser's EMA weights
(``net.*``), the first stage's weights (``ae.*``) and ``latent_scale``; ``config.json`` names the
first stage it was trained with (``autoencoder``) and its config (``ae_config``).
Training reads the first stage from ``autoencoder`` (a bundled name or an artifact folder).
"""

from __future__ import annotations

from typing import Any

import torch

from .autoencoder import KLAutoencoder
from .base import GeneratorError, from_unit, register_generator, to_unit
from .diffusion import DDPM


@register_generator("latent-diffusion", "DDPM U-Net in a KL autoencoder's latent space (DDIM/ancestral); the first stage's decoder paints")
class LatentDiffusion(DDPM):
    version = 1

    def __init__(self, *, image_size: int = 256, num_classes: int = 0, autoencoder: str | None = None,
                 ae_config: dict[str, Any] | None = None, width: int = 64, mults: tuple = (1, 2, 2),
                 timesteps: int = 1000, schedule: str = "cosine", ema_decay: float = 0.999,
                 cond_drop: float = 0.1, prediction: str = "v", lr: float = 2e-4):
        ae_state = None
        if ae_config is None:
            if not autoencoder:
                raise GeneratorError("latent-diffusion needs a first stage: autoencoder=NAME_OR_FOLDER")
            from .artifact import load_generator

            lg = load_generator(autoencoder, "cpu", info=True)
            if lg.model.family != "autoencoder":
                raise GeneratorError(f"{autoencoder}: is a {lg.model.family} model, not an autoencoder")
            ae_config = {k: v for k, v in lg.model.config.items() if k != "num_classes"}
            ae_state = lg.model.state_dict()
            autoencoder = f"{lg.name} (sha256 {lg.sha256})"
        ae = KLAutoencoder(**ae_config)
        if image_size % 8:
            raise GeneratorError(f"image_size must be a multiple of 8, got {image_size}")
        super().__init__(image_size=image_size, num_classes=num_classes, width=width, mults=mults, patch=1,
                         timesteps=timesteps, schedule=schedule, ema_decay=ema_decay, cond_drop=cond_drop,
                         prediction=prediction, lr=lr, _channels=ae.z_channels, _sample_size=image_size // 8)
        self.config = {k: v for k, v in self.config.items() if k != "patch"}
        self.config.update(autoencoder=autoencoder, ae_config=ae_config)
        self.x0_clip = None  # latents are not bounded like pixels
        self.ae = ae.requires_grad_(False)
        if ae_state is not None:
            self.ae.load_state_dict(ae_state)
        self.register_buffer("latent_scale", torch.zeros(()))

    @torch.no_grad()
    def encode(self, x_uint8: torch.Tensor) -> torch.Tensor:
        mean, _ = self.ae.encode(to_unit(x_uint8))
        if float(self.latent_scale) == 0:  # first batch fixes the scale (and it is saved)
            self.latent_scale.fill_(1.0 / float(mean.std().clamp(min=1e-3)))
        return mean * self.latent_scale

    def training_step(self, x, y, optimizers, step):
        return self.denoising_step(self.encode(x), y, optimizers)

    @torch.no_grad()
    def sample(self, seeds, class_ids=None, *, sampler: str = "ddim", steps: int | None = 50, eta: float = 0.0,
               guidance: float = 2.0, progress=None):
        if float(self.latent_scale) == 0:
            raise GeneratorError("this latent-diffusion model was never trained (latent_scale unset)")
        z = self.denoise(seeds, class_ids, sampler=sampler, steps=steps, eta=eta, guidance=guidance,
                         progress=progress)
        # decoded one at a time: image i stays bit-identical when regenerated alone
        out = [from_unit(self.ae.decode(z[i : i + 1] / self.latent_scale)) for i in range(len(z))]
        return torch.cat(out)

    def artifact_state_dict(self):
        return {**super().artifact_state_dict(), **{f"ae.{k}": v for k, v in self.ae.state_dict().items()},
                "latent_scale": self.latent_scale}

    def load_artifact_state_dict(self, state):
        state = dict(state)
        self.latent_scale.copy_(state.pop("latent_scale"))
        ae = {k[3:]: state.pop(k) for k in list(state) if k.startswith("ae.")}
        self.ae.load_state_dict(ae, strict=True)
        super().load_artifact_state_dict(state)
