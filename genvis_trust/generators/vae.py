"""Convolutional VAE (Kingma & Welling 2014): reconstruction + KL, latent interpolation.

Encoder: strided 4x4 convs -> (mu, log-variance) of a ``latent_dim`` Gaussian. Decoder:
mirror with transposed convs. Likelihood: Gaussian with fixed ``sigma`` on pixels in
[-1, 1], so the loss is ``|x - x_hat|^2 / (2 sigma^2) + KL`` per image. Bits/dim is an
*upper bound* (the negative ELBO of the discretised Gaussian, single posterior sample).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .base import Generator, SeedNoise, from_unit, register_generator, to_unit


@register_generator("vae", "convolutional VAE (Gaussian decoder), latent interpolation")
class ConvVAE(Generator):
    version = 1
    has_likelihood = True
    likelihood_kind = "upper bound (negative ELBO, one posterior sample)"
    sampler_defaults = {"temperature": 1.0}

    def __init__(self, *, image_size: int = 32, num_classes: int = 0, latent_dim: int = 64, width: int = 32,
                 sigma: float = 0.15, beta: float = 1.0, lr: float = 1e-3):
        super().__init__(image_size=image_size, num_classes=num_classes, latent_dim=latent_dim, width=width,
                         sigma=sigma, beta=beta, lr=lr)
        self.latent_dim, self.sigma, self.beta = latent_dim, sigma, beta
        downs = int(math.log2(image_size)) - 2
        enc, c = [], 3
        chans = [width * 2 ** min(i, 2) for i in range(downs)]
        for co in chans:
            enc += [nn.Conv2d(c, co, 4, 2, 1), nn.BatchNorm2d(co), nn.LeakyReLU(0.2, True)]
            c = co
        self.enc = nn.Sequential(*enc)
        self.enc_out = nn.Linear(c * 16, 2 * latent_dim)
        self.c_last = c
        self.dec_in = nn.Linear(latent_dim, c * 16)
        dec = []
        for co in [*reversed(chans[:-1]), chans[0]]:
            dec += [nn.ConvTranspose2d(c, co, 4, 2, 1), nn.BatchNorm2d(co), nn.ReLU(True)]
            c = co
        self.dec = nn.Sequential(*dec)
        self.dec_out = nn.Conv2d(c, 3, 3, 1, 1)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.enc_out(self.enc(x).flatten(1)).chunk(2, 1)
        return mu, logvar.clamp(-12, 8)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.dec_in(z)).view(-1, self.c_last, 4, 4)
        return torch.tanh(self.dec_out(self.dec(h)))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        mu, logvar = self.encode(x)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
        return self.decode(z), mu, logvar

    def _terms(self, x_uint8: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = to_unit(x_uint8)
        xh, mu, logvar = self(x)
        rec = ((x - xh) ** 2).flatten(1).sum(1) / (2 * self.sigma**2)
        kl = 0.5 * (mu**2 + logvar.exp() - 1 - logvar).sum(1)
        return rec, kl

    def configure_optimizers(self, lr=None):
        return {"vae": self._adam(self.parameters(), lr or self.config["lr"])}

    def training_step(self, x, y, optimizers, step):
        rec, kl = self._terms(x)
        loss = (rec + self.beta * kl).mean()
        opt = optimizers["vae"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return {"loss": loss.item(), "recon": rec.mean().item(), "kl": kl.mean().item()}

    @torch.no_grad()
    def bits_per_dim(self, x, y=None):
        # -ELBO with the Gaussian density integrated over each 1/127.5-wide pixel bin
        # approximated by density x bin width (accurate for sigma >> bin width).
        rec, kl = self._terms(x)
        d = x[0].numel()
        nll_cont = rec + d * (math.log(self.sigma) + 0.5 * math.log(2 * math.pi)) + kl
        nll = nll_cont - d * math.log(2 / 255)  # bin width in [-1,1] units: 2/255
        return nll / (d * math.log(2))

    @torch.no_grad()
    def sample(self, seeds, class_ids=None, *, temperature: float = 1.0):
        self._check_classes(len(seeds), class_ids)
        was = self.training
        self.eval()
        z = SeedNoise(seeds, self.device).randn(self.latent_dim) * temperature
        img = self.decode(z)
        self.train(was)
        return from_unit(img)

    @torch.no_grad()
    def decode_latents(self, z: torch.Tensor, class_ids=None) -> torch.Tensor:
        self.eval()
        return from_unit(self.decode(z.to(self.device)))

    @torch.no_grad()
    def encode_images(self, images_uint8_hwc: Sequence) -> torch.Tensor:
        """Posterior means of H x W x 3 uint8 images (for interpolating between real images)."""
        self.eval()
        x = torch.stack([torch.as_tensor(im).permute(2, 0, 1) for im in images_uint8_hwc]).to(self.device)
        return self.encode(to_unit(x))[0]

    def latents(self, seeds: Sequence[int], temperature: float = 1.0) -> torch.Tensor:
        return SeedNoise(seeds, self.device).randn(self.latent_dim) * temperature
