"""NPR: Neighbouring Pixel Relationships (Tan et al., CVPR 2024).

The input is replaced by its residual against a nearest-neighbour down-then-up-sampled
copy, which isolates the local correlations that generator up-sampling leaves behind;
a shallow ResNet (two bottleneck stages) classifies the residual. With ``width=64,
blocks=(3, 4)`` the parameter names and shapes match the published checkpoint
(``conv1``, ``bn1``, ``layer1``, ``layer2``, ``fc1``), so ``detectors import --arch npr``
loads it; the toolkit's own default is narrower so it trains on a CPU.

The bottleneck block is written here (:class:`Bottleneck`, torchvision's ResNet v1.5 block
with the same parameter names and shapes) rather than imported from torchvision, whose
import costs seconds (it pulls in ``torch._dynamo``) on every ``scan`` that loads the
default detector.
"""

from __future__ import annotations

import torch
from torch import nn

from .registry import CheckpointImportError, register_detector

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class Bottleneck(nn.Module):
    """torchvision's ``resnet.Bottleneck`` (ResNet v1.5: the stride on the 3x3 conv), same
    submodule names and parameter shapes: ``conv1/bn1`` 1x1, ``conv2/bn2`` 3x3,
    ``conv3/bn3`` 1x1 to ``planes * 4``, and ``downsample`` (``.0`` conv, ``.1`` norm)."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride

    def fold_batch_norm(self) -> None:
        """For inference only: each batch norm folded into the convolution before it."""
        for i in (1, 2, 3):
            fold_batch_norm(self, f"conv{i}", f"bn{i}")
        if self.downsample is not None:
            fold_batch_norm(self.downsample, "0", "1")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(out + identity)


def fold_batch_norm(module: nn.Module, conv: str, bn: str) -> None:
    """Replace ``module.<conv>`` by the convolution with ``module.<bn>`` (eval statistics) folded
    in, and the batch norm by an identity: the same arithmetic as ``torch.jit.freeze``'s folding,
    so the logits are those of the frozen graph, bit for bit."""
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    setattr(module, conv, fuse_conv_bn_eval(getattr(module, conv), getattr(module, bn)))
    setattr(module, bn, nn.Identity())


def npr_residual(x: torch.Tensor) -> torch.Tensor:
    """x minus its nearest-neighbour 0.5x down / 2x up copy (sides must be even)."""
    h, w = x.shape[-2:]
    x = x[..., : h - h % 2, : w - w % 2]
    down = x[..., ::2, ::2]
    return x - down.repeat_interleave(2, dim=-2).repeat_interleave(2, dim=-1)


@register_detector("npr", "NPR up-sampling residual + shallow ResNet (the default's learned member; published layout at width=64)", width=16, blocks=(1, 1))
class NPRNet(nn.Module):
    def __init__(self, width: int = 64, blocks=(3, 4)):
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, 3, 2, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.inplanes = width
        self.layer1 = self._make_layer(width, blocks[0], 1)
        self.layer2 = self._make_layer(width * 2, blocks[1], 2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Linear(width * 2 * Bottleneck.expansion, 1)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def _make_layer(self, planes: int, n: int, stride: int) -> nn.Sequential:
        down = None
        if stride != 1 or self.inplanes != planes * Bottleneck.expansion:
            down = nn.Sequential(
                nn.Conv2d(self.inplanes, planes * Bottleneck.expansion, 1, stride, bias=False),
                nn.BatchNorm2d(planes * Bottleneck.expansion),
            )
        layers = [Bottleneck(self.inplanes, planes, stride, down)]
        self.inplanes = planes * Bottleneck.expansion
        layers += [Bottleneck(self.inplanes, planes) for _ in range(1, n)]
        return nn.Sequential(*layers)

    def fold_batch_norm(self) -> None:
        """For inference only: ``bn1`` folded into ``conv1`` (the blocks fold their own)."""
        fold_batch_norm(self, "conv1", "bn1")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - self.mean) / self.std
        x = self.conv1(npr_residual(x) * 2.0 / 3.0)
        x = self.maxpool(self.relu(self.bn1(x)))
        x = self.layer2(self.layer1(x))
        return self.fc1(torch.flatten(self.avgpool(x), 1)).squeeze(1)

    @staticmethod
    def checkpoint_filter_fn(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict]:
        """The published raw state dict as is; width and depth read from its shapes."""
        conv1 = state.get("conv1.weight")
        if conv1 is None:
            raise CheckpointImportError("no conv1.weight: not an NPR state dict")
        blocks = [_count_blocks(state, "layer1"), _count_blocks(state, "layer2")]
        return state, {"patch": 224, "width": int(conv1.shape[0]), "blocks": blocks}


def _count_blocks(state: dict, layer: str) -> int:
    idx = {int(k.split(".")[1]) for k in state if k.startswith(layer + ".")}
    if not idx:
        raise CheckpointImportError(f"no {layer} weights: not an NPR state dict")
    return max(idx) + 1


__all__ = ["Bottleneck", "NPRNet", "fold_batch_norm", "npr_residual"]
