"""The default detector: a compact ResNet trained from scratch on small patches.

No early down-sampling: the first stage runs at full resolution so pixel-level
generator traces (up-sampling grids, denoising residue) reach the classifier.
"""

from __future__ import annotations

import torch
from torch import nn

from .registry import register_detector


class _Block(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.skip = (
            nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
            if stride != 1 or cin != cout
            else nn.Identity()
        )

    def forward(self, x):
        y = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(y)) + self.skip(x))


def resnet_trunk(cin: int, widths: tuple[int, ...], blocks: tuple[int, ...]) -> nn.Sequential:
    """Stages of residual blocks; each stage after the first halves the resolution."""
    layers: list[nn.Module] = [
        nn.Conv2d(cin, widths[0], 3, 1, 1, bias=False),
        nn.BatchNorm2d(widths[0]),
        nn.ReLU(inplace=True),
    ]
    c = widths[0]
    for i, (w, n) in enumerate(zip(widths, blocks, strict=True)):
        for j in range(n):
            layers.append(_Block(c, w, 2 if (i > 0 and j == 0) else 1))
            c = w
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    return nn.Sequential(*layers)


@register_detector("cnn", "compact ResNet trained from scratch (default family of `train detector`)", widths=(16, 32, 64), blocks=(1, 1, 1))
class CompactCNN(nn.Module):
    def __init__(self, widths=(16, 32, 64), blocks=(1, 1, 1), dropout: float = 0.1):
        super().__init__()
        self.trunk = resnet_trunk(3, tuple(widths), tuple(blocks))
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(widths[-1], 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.drop(self.trunk((x - 0.5) / 0.5))).squeeze(1)
