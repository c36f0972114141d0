"""NPR: Neighbouring Pixel Relationships (Tan et al., CVPR 2024).

The input is replaced by its residual against a nearest-neighbour down-then-up-sampled
copy, which isolates the local correlations that generator up-sampling leaves behind;
a shallow ResNet (two bottleneck stages) classifies the residual. With ``width=64,
blocks=(3, 4)`` the parameter names and shapes match the published checkpoint
(``conv1``, ``bn1``, ``layer1``, ``layer2``, ``fc1``), so ``detectors import --arch npr``
loads it; the toolkit's own default is narrower so it trains on a CPU.

One class, two uses, told apart by ``whole_image`` (part of the config, so an artifact says
which it is):

- ``whole_image=False`` (the default): one of the toolkit's own tile members (the bundled
  default stacks NPR members), normalising inside ``forward``, unchanged;
- ``whole_image=True``: the published detector, scored the way NPR's code scores one image
  (``prepare_input``: the whole image at its own size, no resize or crop, an odd last row or
  column dropped as the NPR README's snippet for odd sizes does, ``ToTensor``, ImageNet
  normalisation; ``forward``: the residual with ``F.interpolate(mode="nearest",
  recompute_scale_factor=True)`` as the reference computes it). ``detectors import --arch npr``
  builds this form. Its fidelity to the reference code: benchmarks/results/published-fidelity.md.

The bottleneck block is written here (:class:`Bottleneck`, torchvision's ResNet v1.5 block
with the same parameter names and shapes) rather than imported from torchvision, whose
import costs seconds (it pulls in ``torch._dynamo``) on every ``scan`` that loads the
default detector.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .published import PublishedCard, WeightsSource
from .registry import CheckpointImportError, register_detector

NPR_COMMIT = "73cde1ced21291bfb504a2add2b53fbe99c4f433"
NPR_CARD = PublishedCard(
    publication="Tan, Liu, Zhao, Wei, Gu, Liu, Wei: Rethinking the Up-Sampling Operations in CNN-based "
    "Generative Network for Generalizable Deepfake Detection, CVPR 2024",
    repository="https://github.com/chuangchuangtan/NPR-DeepfakeDetection",
    commit=NPR_COMMIT,
    licence="none stated (the repository has no licence file: all rights reserved)",
    commercial_use=False,
    preprocessing="whole image at its own size (no resize, no crop: the README's setting for single images, "
    "batch size 1); an odd last row or column dropped (the README's snippet for odd sizes); ToTensor; "
    "ImageNet mean/std normalisation. In the network: the image minus its nearest-neighbour 0.5x down, "
    "2x up copy, times 2/3, into a two-stage ResNet-50 trunk",
    claimed_accuracy="mean accuracy 91.7% over the 16 generators of AIGCDetectBenchmark with the ProGAN "
    "4-class checkpoint model_epoch_last_3090.pth, no resize, no crop (the publisher's README table)",
    weights=[
        WeightsSource(f"https://github.com/chuangchuangtan/NPR-DeepfakeDetection/raw/{NPR_COMMIT}/NPR.pth",
                      "NPR.pth", note="raw state dict; the checkpoint test.py loads"),
        WeightsSource(f"https://github.com/chuangchuangtan/NPR-DeepfakeDetection/raw/{NPR_COMMIT}/model_epoch_last_3090.pth",
                      "model_epoch_last_3090.pth", variant="progan-4class",
                      note="raw state dict; the checkpoint of the README's AIGCDetectBenchmark table"),
    ],
    checkpoint_key=None,
)

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


def bottleneck_stage(inplanes: int, planes: int, n: int, stride: int) -> nn.Sequential:
    """``n`` bottleneck blocks as torchvision's ``ResNet._make_layer`` builds them (the first
    one strided, with a 1x1 ``downsample`` when the shape changes): same names and shapes."""
    down = None
    if stride != 1 or inplanes != planes * Bottleneck.expansion:
        down = nn.Sequential(
            nn.Conv2d(inplanes, planes * Bottleneck.expansion, 1, stride, bias=False),
            nn.BatchNorm2d(planes * Bottleneck.expansion),
        )
    layers = [Bottleneck(inplanes, planes, stride, down)]
    layers += [Bottleneck(planes * Bottleneck.expansion, planes) for _ in range(1, n)]
    return nn.Sequential(*layers)


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


@register_detector("npr", "NPR up-sampling residual + shallow ResNet: the default's learned member (tiles), "
                   "or with whole_image=True the published NPR (CVPR 2024) scored as its code does",
                   width=16, blocks=(1, 1))
class NPRNet(nn.Module):
    published = NPR_CARD

    def __init__(self, width: int = 64, blocks=(3, 4), whole_image: bool = False):
        super().__init__()
        self.whole_image = bool(whole_image)
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
        layer = bottleneck_stage(self.inplanes, planes, n, stride)
        self.inplanes = planes * Bottleneck.expansion
        return layer

    def fold_batch_norm(self) -> None:
        """For inference only: ``bn1`` folded into ``conv1`` (the blocks fold their own)."""
        fold_batch_norm(self, "conv1", "bn1")

    def prepare_input(self, image) -> torch.Tensor:
        """The published form's input: NPR's test transform of one ``H x W x 3`` uint8 RGB image
        (no resize, no crop; ``ToTensor``, ``Normalize``), an odd last row/column dropped."""
        from torchvision.transforms import functional as TF

        h, w = image.shape[:2]
        image = image[: h - h % 2, : w - w % 2]
        # np.array: a copy, decoded arrays may be read-only
        return TF.normalize(TF.to_tensor(np.array(image)), IMAGENET_MEAN, IMAGENET_STD)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.whole_image:  # prepare_input normalised; the residual as NPR's forward computes it
            half = nn.functional.interpolate(x, scale_factor=0.5, mode="nearest", recompute_scale_factor=True)
            x = x - nn.functional.interpolate(half, scale_factor=2.0, mode="nearest", recompute_scale_factor=True)
            x = self.conv1(x * 2.0 / 3.0)
        else:
            x = (x - self.mean) / self.std
            x = self.conv1(npr_residual(x) * 2.0 / 3.0)
        x = self.maxpool(self.relu(self.bn1(x)))
        x = self.layer2(self.layer1(x))
        return self.fc1(torch.flatten(self.avgpool(x), 1)).squeeze(1)

    @staticmethod
    def checkpoint_filter_fn(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict]:
        """The published raw state dict as is; width and depth read from its shapes; the
        published whole-image form."""
        conv1 = state.get("conv1.weight")
        if conv1 is None:
            raise CheckpointImportError("no conv1.weight: not an NPR state dict")
        blocks = [_count_blocks(state, "layer1"), _count_blocks(state, "layer2")]
        return state, {"patch": 224, "width": int(conv1.shape[0]), "blocks": blocks, "whole_image": True}


def _count_blocks(state: dict, layer: str) -> int:
    idx = {int(k.split(".")[1]) for k in state if k.startswith(layer + ".")}
    if not idx:
        raise CheckpointImportError(f"no {layer} weights: not an NPR state dict")
    return max(idx) + 1


__all__ = ["NPR_CARD", "Bottleneck", "NPRNet", "bottleneck_stage", "fold_batch_norm", "npr_residual"]
