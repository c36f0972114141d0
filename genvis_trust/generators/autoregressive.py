"""PixelCNN (van den Oord et al. 2016): masked convolutions, pixel-by-pixel sampling.

p(x) = prod over pixels in raster order of p(r | x_<) p(g | r, x_<) p(b | r, g, x_<), each a
256-way softmax, so the likelihood (bits/dim) is exact. The trunk sees only earlier
pixels: a 7x7 mask-"A" convolution (centre excluded) and residual blocks of 3x3
mask-"B" convolutions. The colour order within a pixel is handled by a small head that
adds embeddings of the already-known channels of the same pixel. Like the original
PixelCNN, the stacked masks leave a blind spot to the upper right (Gated PixelCNN fixes
it with two stacks; not done here).

Sampling computes only the causal window that the next pixel depends on (its receptive
field: rows above within reach and columns within reach), which is exact and much faster
than re-running the whole image for each of the H*W positions.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .base import Generator, SeedNoise, register_generator, to_unit


class MaskedConv2d(nn.Conv2d):
    def __init__(self, cin: int, cout: int, k: int, mask_type: str):
        super().__init__(cin, cout, k, padding=k // 2)
        mask = torch.ones_like(self.weight)
        c = k // 2
        mask[:, :, c, c + (mask_type == "B"):] = 0
        mask[:, :, c + 1:] = 0
        self.register_buffer("mask", mask, persistent=False)

    def forward(self, x):
        return F.conv2d(x, self.weight * self.mask, self.bias, padding=self.padding)


class ResidualBlock(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.conv = MaskedConv2d(c, c, 3, "B")
        self.proj = nn.Conv2d(c, c, 1)

    def forward(self, x):
        return x + self.proj(F.relu(self.conv(F.relu(x))))


@register_generator("autoregressive", "PixelCNN (masked convolutions, 256-way softmax per channel); exact bits/dim")
class PixelCNN(Generator):
    version = 1
    has_likelihood = True
    likelihood_kind = "exact (discrete softmax likelihood)"
    sampler_defaults = {"temperature": 1.0}

    def __init__(self, *, image_size: int = 32, num_classes: int = 0, hidden: int = 48, blocks: int = 4,
                 lr: float = 1e-3):
        super().__init__(image_size=image_size, num_classes=num_classes, hidden=hidden, blocks=blocks, lr=lr)
        self.inp = MaskedConv2d(3, hidden, 7, "A")
        self.body = nn.Sequential(*[ResidualBlock(hidden) for _ in range(blocks)])
        self.emb_r = nn.Embedding(256, hidden)
        self.emb_g = nn.Embedding(256, hidden)
        self.emb_rb = nn.Embedding(256, hidden)
        self.head = nn.ModuleList([nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 256))
                                   for _ in range(3)])
        self.reach = 3 + blocks  # rows above / columns either side that a position depends on

    def trunk(self, x_unit: torch.Tensor) -> torch.Tensor:
        return F.relu(self.body(self.inp(x_unit)))

    def logits(self, h: torch.Tensor, x_uint8: torch.Tensor) -> torch.Tensor:
        """h: (B,F,H,W) trunk features, x: known uint8 pixels -> logits (B,3,H,W,256)."""
        h = h.permute(0, 2, 3, 1)
        r, g = x_uint8[:, 0].long(), x_uint8[:, 1].long()
        hr = h
        hg = h + self.emb_r(r)
        hb = h + self.emb_rb(r) + self.emb_g(g)
        return torch.stack([self.head[0](hr), self.head[1](hg), self.head[2](hb)], 1)

    def forward(self, x_uint8: torch.Tensor) -> torch.Tensor:
        return self.logits(self.trunk(to_unit(x_uint8)), x_uint8)

    def nll_bits(self, x_uint8: torch.Tensor) -> torch.Tensor:
        logits = self(x_uint8)
        ce = F.cross_entropy(logits.reshape(-1, 256), x_uint8.long().reshape(-1), reduction="none")
        return ce.view(x_uint8.shape[0], -1).mean(1) / math.log(2)

    def configure_optimizers(self, lr=None):
        return {"pixelcnn": self._adam(self.parameters(), lr or self.config["lr"])}

    def training_step(self, x, y, optimizers, step):
        loss = self.nll_bits(x).mean()
        opt = optimizers["pixelcnn"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.parameters(), 10.0)
        opt.step()
        return {"bits_per_dim": loss.item()}

    @torch.no_grad()
    def bits_per_dim(self, x, y=None):
        return self.nll_bits(x)

    @torch.no_grad()
    def sample(self, seeds, class_ids=None, *, temperature: float = 1.0, progress=None):
        """Raster-order sampling by inverse CDF from per-image uniforms (one draw per image)."""
        self._check_classes(len(seeds), class_ids)
        was = self.training
        self.eval()
        n, s, dev, r = len(seeds), self.image_size, self.device, self.reach
        u = SeedNoise(seeds, dev).rand(3, s, s)
        x = torch.zeros(n, 3, s, s, dtype=torch.uint8, device=dev)
        for i in range(s):
            y0 = max(0, i - r)
            for j in range(s):
                x0, x1 = max(0, j - r), min(s, j + r + 1)
                win = x[:, :, y0 : i + 1, x0:x1]
                h = self.trunk(to_unit(win))[:, :, i - y0, j - x0]  # (n, F)
                known = x[:, :, i, j].long()
                for c in range(3):
                    if c == 0:
                        hc = h
                    elif c == 1:
                        hc = h + self.emb_r(known[:, 0])
                    else:
                        hc = h + self.emb_rb(known[:, 0]) + self.emb_g(known[:, 1])
                    probs = torch.softmax(self.head[c](hc).float() / temperature, -1)
                    cdf = probs.cumsum(-1)
                    v = torch.searchsorted(cdf, u[:, c, i, j, None] * cdf[:, -1:]).clamp(max=255)
                    known[:, c] = v[:, 0]
                x[:, :, i, j] = known.to(torch.uint8)
            if progress:
                progress(i + 1, s)
        self.train(was)
        return x.permute(0, 2, 3, 1).contiguous().cpu()
