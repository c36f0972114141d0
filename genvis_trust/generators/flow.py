"""Glow-style normalizing flow (Kingma & Dhariwal 2018; RealNVP, Dinh et al. 2017).

x (uint8) -> uniform dequantisation -> logit transform -> [squeeze -> K x (ActNorm ->
invertible 1x1 conv -> affine coupling)] x levels -> z ~ N(0, I). Every layer is
invertible with a tractable log-determinant, so the log-likelihood is exact (up to the
dequantisation bound) and reported as bits/dim. No multi-scale factor-out: the few
levels keep the code short and the model small. Sampling inverts the flow from
``z ~ N(0, temperature^2 I)``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .base import Generator, SeedNoise, register_generator

ALPHA = 0.05  # logit transform keeps pixels away from 0 and 1 (RealNVP)


def squeeze(x):
    return F.pixel_unshuffle(x, 2)


def unsqueeze(x):
    return F.pixel_shuffle(x, 2)


class ActNorm(nn.Module):
    """Per-channel affine, initialised from the first batch to zero mean and unit variance."""

    def __init__(self, c: int):
        super().__init__()
        self.loc = nn.Parameter(torch.zeros(1, c, 1, 1))
        self.log_scale = nn.Parameter(torch.zeros(1, c, 1, 1))
        self.register_buffer("initialized", torch.tensor(0, dtype=torch.uint8))

    @torch.no_grad()
    def _init(self, x):
        mean = x.mean((0, 2, 3), keepdim=True)
        std = x.std((0, 2, 3), keepdim=True)
        self.loc.copy_(-mean)
        self.log_scale.copy_(-(std + 1e-6).log())
        self.initialized.fill_(1)

    def forward(self, x):
        if self.training and not self.initialized:
            self._init(x)
        y = (x + self.loc) * self.log_scale.exp()
        return y, self.log_scale.sum() * x.shape[2] * x.shape[3]

    def inverse(self, y):
        return y * (-self.log_scale).exp() - self.loc


class InvConv1x1(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        w = torch.linalg.qr(torch.randn(c, c))[0]
        self.weight = nn.Parameter(w)

    def forward(self, x):
        logdet = torch.linalg.slogdet(self.weight)[1] * x.shape[2] * x.shape[3]
        return F.conv2d(x, self.weight[:, :, None, None]), logdet

    def inverse(self, y):
        return F.conv2d(y, torch.linalg.inv(self.weight)[:, :, None, None])


class AffineCoupling(nn.Module):
    def __init__(self, c: int, hidden: int):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(c // 2, hidden, 3, 1, 1), nn.ReLU(),
            nn.Conv2d(hidden, hidden, 1), nn.ReLU(),
            nn.Conv2d(hidden, c, 3, 1, 1),
        )
        nn.init.zeros_(self.net[-1].weight)  # starts as the identity
        nn.init.zeros_(self.net[-1].bias)

    def _st(self, xa):
        h = self.net(xa)
        shift, raw = h[:, 0::2], h[:, 1::2]
        return shift, torch.sigmoid(raw + 2.0)

    def forward(self, x):
        xa, xb = x.chunk(2, 1)
        shift, scale = self._st(xa)
        yb = (xb + shift) * scale
        return torch.cat([xa, yb], 1), scale.log().flatten(1).sum(1)

    def inverse(self, y):
        ya, yb = y.chunk(2, 1)
        shift, scale = self._st(ya)
        return torch.cat([ya, yb / scale - shift], 1)


class FlowStep(nn.Module):
    def __init__(self, c: int, hidden: int):
        super().__init__()
        self.norm, self.mix, self.coupling = ActNorm(c), InvConv1x1(c), AffineCoupling(c, hidden)

    def forward(self, x):
        x, l1 = self.norm(x)
        x, l2 = self.mix(x)
        x, l3 = self.coupling(x)
        return x, l1 + l2 + l3

    def inverse(self, y):
        return self.norm.inverse(self.mix.inverse(self.coupling.inverse(y)))


@register_generator("flow", "Glow-style flow (actnorm, 1x1 conv, affine coupling); exact bits/dim")
class GlowFlow(Generator):
    version = 1
    has_likelihood = True
    likelihood_kind = "upper bound (uniform dequantisation, one noise draw)"
    sampler_defaults = {"temperature": 0.7}

    def __init__(self, *, image_size: int = 32, num_classes: int = 0, levels: int = 2, depth: int = 6,
                 hidden: int = 96, lr: float = 1e-3):
        super().__init__(image_size=image_size, num_classes=num_classes, levels=levels, depth=depth,
                         hidden=hidden, lr=lr)
        self.levels = levels
        self.blocks = nn.ModuleList()
        c = 3
        for _ in range(levels):
            c *= 4
            self.blocks.append(nn.ModuleList([FlowStep(c, hidden) for _ in range(depth)]))
        self.z_shape = (c, image_size >> levels, image_size >> levels)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x: float in logit space (B,3,H,W) -> (z, log|det dz/dx|)."""
        logdet = torch.zeros(x.shape[0], device=x.device)
        for steps in self.blocks:
            x = squeeze(x)
            for st in steps:
                x, ld = st(x)
                logdet = logdet + ld
        return x, logdet

    def inverse(self, z: torch.Tensor) -> torch.Tensor:
        for steps in reversed(self.blocks):
            for st in reversed(steps):
                z = st.inverse(z)
            z = unsqueeze(z)
        return z

    def nll_bits(self, x_uint8: torch.Tensor, dequantize: bool = True) -> torch.Tensor:
        """Per-image bits/dim of the discrete images (uniform dequantisation)."""
        u = torch.rand_like(x_uint8, dtype=torch.float32) if dequantize else torch.full_like(x_uint8, 0.5, dtype=torch.float32)
        y = (x_uint8.float() + u) / 256.0
        s = ALPHA + (1 - 2 * ALPHA) * y
        x = s.log() - (1 - s).log()
        pre_ld = (math.log(1 - 2 * ALPHA) - s.log() - (1 - s).log()).flatten(1).sum(1)
        z, ld = self(x)
        d = x[0].numel()
        logpz = -0.5 * (z**2 + math.log(2 * math.pi)).flatten(1).sum(1)
        logp = logpz + ld + pre_ld - d * math.log(256.0)
        return -logp / (d * math.log(2))

    def configure_optimizers(self, lr=None):
        return {"flow": self._adam(self.parameters(), lr or self.config["lr"])}

    def training_step(self, x, y, optimizers, step):
        loss = self.nll_bits(x).mean()
        opt = optimizers["flow"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.parameters(), 50.0)
        opt.step()
        return {"bits_per_dim": loss.item()}

    @torch.no_grad()
    def bits_per_dim(self, x, y=None):
        return self.nll_bits(x)

    @torch.no_grad()
    def sample(self, seeds, class_ids=None, *, temperature: float = 0.7):
        self._check_classes(len(seeds), class_ids)
        was = self.training
        self.eval()
        z = SeedNoise(seeds, self.device).randn(*self.z_shape) * temperature
        x = self.inverse(z)
        self.train(was)
        y = ((torch.sigmoid(x) - ALPHA) / (1 - 2 * ALPHA)).clamp(0, 1)
        img = (y * 256).floor().clamp(0, 255).to(torch.uint8)
        return img.permute(0, 2, 3, 1).contiguous().cpu()
