"""Zero-shot detection from a likelihood model of real photographs (in the spirit of ZED, ECCV 2024).

No generated image is needed to train it. A small network learns, on real photographs only, to
predict each pixel of an image from the image one level down (2x average-pooled, then
up-sampled): a Laplace distribution (mean, scale) per pixel and channel. For a real photograph
the *actual* coding cost of its pixels under that model matches the *expected* cost (the
model's own entropy); generated images are smoother than cameras make them, so they cost less
than expected. The decision statistic per level is that gap,

    gap = mean over pixels of (|x - mu| / b - 1) * log2(e)   [bits per value]

(zero in expectation when the model is right), read at ``levels`` resolutions. The logit is
``-(sum of gaps - center) / spread``, with ``center``/``spread`` fitted on real validation
photographs by :func:`fit_real_reference` so that logit 0 sits at a chosen false-positive rate
on real photos: it is thresholded, not a calibrated probability.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .registry import register_detector

LOG2E = 1.0 / math.log(2.0)


def _predictor(width: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(3, width, 3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(width, width, 3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(width, width, 3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(width, 6, 3, padding=1),
    )


@register_detector(
    "zed",
    "zero-shot: coding-cost gap of a multi-resolution likelihood model trained on real photos only",
    patch=64, width=32, levels=2,
)
class ZeroShotCoder(nn.Module):
    trained_on_real_only = True

    def __init__(self, width: int = 32, levels: int = 2):
        super().__init__()
        self.levels = levels
        self.nets = nn.ModuleList(_predictor(width) for _ in range(levels))
        # the real-photo reference of the statistic (fitted after training)
        self.register_buffer("center", torch.zeros(()))
        self.register_buffer("spread", torch.ones(()))

    def _level(self, net: nn.Module, cur: torch.Tensor):
        """(nll, gap) per pixel value, in bits, of ``cur`` (0-255 scale) given its lower level."""
        h, w = cur.shape[-2:]
        cur = cur[..., : h - h % 2, : w - w % 2]
        low = F.avg_pool2d(cur, 2)
        ctx = F.interpolate(low, scale_factor=2, mode="nearest")
        out = net(ctx / 255.0 - 0.5)
        mu = ctx + out[:, :3] * 32.0
        b = F.softplus(out[:, 3:]) * 8.0 + 0.5  # never sharper than half a grey level
        r = (cur - mu).abs() / b
        nll = (torch.log(2 * b) + r) * LOG2E  # continuous Laplace density, bits
        gap = (r - 1.0) * LOG2E  # actual minus expected cost
        return nll, gap, low

    def level_terms(self, x: torch.Tensor):
        """Per level: (mean nll, mean gap) per image. ``x`` in [0, 1]."""
        cur = x * 255.0
        nlls, gaps = [], []
        for net in self.nets:
            nll, gap, cur = self._level(net, cur)
            nlls.append(nll.mean((1, 2, 3)))
            gaps.append(gap.mean((1, 2, 3)))
        return torch.stack(nlls, 1), torch.stack(gaps, 1)

    def statistic(self, x: torch.Tensor) -> torch.Tensor:
        return self.level_terms(x)[1].sum(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return -(self.statistic(x) - self.center) / self.spread

    def nll_loss(self, x: torch.Tensor) -> torch.Tensor:
        """Training objective on real images: mean coding cost in bits."""
        return self.level_terms(x)[0].mean()


@torch.no_grad()
def fit_real_reference(net: ZeroShotCoder, real_patches: np.ndarray, fpr: float = 0.05, batch: int = 64) -> dict:
    """Set ``center`` so that a fraction ``fpr`` of these real patches get logit > 0, and
    ``spread`` to their statistic's standard deviation. Returns the numbers for the card."""
    net.eval()
    stats = []
    for i in range(0, len(real_patches), batch):
        x = torch.from_numpy(np.ascontiguousarray(real_patches[i : i + batch])).permute(0, 3, 1, 2).float() / 255.0
        stats.append(net.statistic(x))
    s = torch.cat(stats).numpy()
    center = float(np.quantile(s, fpr))  # low gap = suspicious: the fpr-quantile from below
    spread = float(max(np.std(s), 1e-3))
    net.center.fill_(center)
    net.spread.fill_(spread)
    return {"fpr": fpr, "center": center, "spread": spread, "n": len(s), "real_stat_mean": float(np.mean(s))}


__all__ = ["ZeroShotCoder", "fit_real_reference"]
