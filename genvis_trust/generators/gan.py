"""DCGAN: transposed-convolution generator, convolutional discriminator, adversarial training.

Generator: z (+ class embedding) -> 4x4 -> [ConvTranspose 4x4 stride 2, BatchNorm, ReLU]* ->
3x3 conv -> tanh. Discriminator: strided 4x4 convs with LeakyReLU and spectral norm
(Miyato et al. 2018; keeps a small-data GAN stable without tuning), plus a projection
term ``<embed(y), h>`` when class-conditional (Miyato & Koyama 2018). Loss: the
non-saturating logistic loss of Goodfellow et al. 2014. Samples use the generator in eval
mode (BatchNorm running statistics), so image ``i`` does not depend on its batch-mates.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from .base import Generator, SeedNoise, from_unit, register_generator, to_unit


@register_generator("gan", "DCGAN (transposed-conv generator, spectral-norm discriminator), optional class-conditional")
class DCGAN(Generator):
    version = 1
    sampler_defaults = {"truncation": 1.0}

    def __init__(self, *, image_size: int = 32, num_classes: int = 0, z_dim: int = 64, width: int = 48,
                 d_width: int = 32, lr: float = 2e-4):
        super().__init__(image_size=image_size, num_classes=num_classes, z_dim=z_dim, width=width,
                         d_width=d_width, lr=lr)
        self.z_dim = z_dim
        ups = int(math.log2(image_size)) - 2
        c0 = width * 2 ** (ups - 1)
        emb = 32 if num_classes else 0
        self.g_embed = nn.Embedding(num_classes, emb) if num_classes else None
        self.g_fc = nn.Linear(z_dim + emb, c0 * 16)
        self.g_bn0 = nn.BatchNorm2d(c0)
        blocks, c = [], c0
        for i in range(ups):
            c_out = max(width // 2, c // 2) if i < ups - 1 else width // 2
            blocks += [nn.ConvTranspose2d(c, c_out, 4, 2, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(True)]
            c = c_out
        self.g_up = nn.Sequential(*blocks)
        self.g_out = nn.Conv2d(c, 3, 3, 1, 1)
        self.c0 = c0

        layers, c = [], 3
        for i in range(ups):
            c_out = d_width * 2**i
            layers += [spectral_norm(nn.Conv2d(c, c_out, 4, 2, 1)), nn.LeakyReLU(0.2, True)]
            c = c_out
        self.d_body = nn.Sequential(*layers)
        self.d_fc = spectral_norm(nn.Linear(c * 16, 1))
        self.d_embed = spectral_norm(nn.Embedding(num_classes, c * 16)) if num_classes else None

    # -- networks
    def generate(self, z: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        if self.g_embed is not None:
            z = torch.cat([z, self.g_embed(y)], 1)
        h = F.relu(self.g_bn0(self.g_fc(z).view(-1, self.c0, 4, 4)))
        return torch.tanh(self.g_out(self.g_up(h)))

    def discriminate(self, x: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        h = self.d_body(x).flatten(1)
        logit = self.d_fc(h).squeeze(1)
        if self.d_embed is not None:
            logit = logit + (self.d_embed(y) * h).sum(1)
        return logit

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.generate(z, y)

    def _g_params(self):
        return [p for n, p in self.named_parameters() if n.startswith("g_")]

    def _d_params(self):
        return [p for n, p in self.named_parameters() if n.startswith("d_")]

    # -- training
    def configure_optimizers(self, lr=None):
        lr = lr or self.config["lr"]
        return {"g": self._adam(self._g_params(), lr, (0.5, 0.999)),
                "d": self._adam(self._d_params(), lr, (0.5, 0.999))}

    def training_step(self, x, y, optimizers, step):
        real = to_unit(x)
        b = real.shape[0]
        z = torch.randn(b, self.z_dim, device=real.device)
        fake = self.generate(z, y)
        d_real = self.discriminate(real, y)
        d_fake = self.discriminate(fake.detach(), y)
        d_loss = F.softplus(-d_real).mean() + F.softplus(d_fake).mean()
        optimizers["d"].zero_grad(set_to_none=True)
        d_loss.backward()
        optimizers["d"].step()
        g_loss = F.softplus(-self.discriminate(fake, y)).mean()
        optimizers["g"].zero_grad(set_to_none=True)
        g_loss.backward()
        optimizers["g"].step()
        return {"d_loss": d_loss.item(), "g_loss": g_loss.item()}

    # -- sampling
    def latents(self, seeds: Sequence[int], truncation: float = 1.0) -> torch.Tensor:
        z = SeedNoise(seeds, self.device).randn(self.z_dim)
        if truncation < 1.0:  # resample-free truncation: shrink towards the mode
            z = z * truncation
        return z

    @torch.no_grad()
    def sample(self, seeds, class_ids=None, *, truncation: float = 1.0):
        y = self._check_classes(len(seeds), class_ids)
        was = self.training
        self.eval()
        img = self.generate(self.latents(seeds, truncation), y)
        self.train(was)
        return from_unit(img)

    @torch.no_grad()
    def decode_latents(self, z: torch.Tensor, class_ids=None) -> torch.Tensor:
        y = self._check_classes(z.shape[0], class_ids)
        return from_unit(self.generate(z.to(self.device), y))
