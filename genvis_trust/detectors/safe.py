"""SAFE (Li et al., KDD 2025): a truncated ResNet-50 (stem and two bottleneck stages, as NPR's)
reading the diagonal high-frequency band of a one-level wavelet transform, scored the way its
code scores one image.

``prepare_input`` is SAFE's evaluation transform (``--transform_mode crop --input_size 256``):
``CenterCrop(256)`` (zero padding for smaller images) and ``ToTensor``, no normalisation.
``forward`` is its network: the HH band of a one-level ``bior1.3`` DWT with symmetric padding
(:func:`dwt_hh`, written to match ``pytorch_wavelets.DWTForward(J=1, mode="symmetric",
wave="bior1.3")``, which SAFE calls, operation for operation), resized back to the input size by
``torchvision.transforms.Resize`` (bilinear), then the trunk and ``fc1`` -> 2 classes. The
toolkit's logit is ``z[1] - z[0]``, so its sigmoid is SAFE's ``softmax(z)[:, 1]``. Published
file: ``checkpoint-best.pth`` with the state dict under ``'model'`` (beside optimiser state and
an ``argparse.Namespace``, which the weights-only reader accepts as plain data).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .npr import bottleneck_stage
from .published import PublishedCard, WeightsSource
from .registry import CheckpointImportError, register_detector

SAFE_COMMIT = "722620a6a6c1acae5bfbc580c9b0a295f64b7a87"
SAFE_CARD = PublishedCard(
    publication="Li, Cai, Hao, Jiang, Hu, Feng: Improving Synthetic Image Detection Towards Generalization: "
    "An Image Transformation Perspective, KDD 2025 (arXiv 2408.06741)",
    repository="https://github.com/Ouxiang-Li/SAFE",
    commit=SAFE_COMMIT,
    licence="Apache-2.0",
    commercial_use=True,
    preprocessing="CenterCrop(256) (zero-padded when smaller), ToTensor, no normalisation; in the network: "
    "the HH band of a one-level bior1.3 DWT (symmetric padding), bilinear-resized back to 256x256, into a "
    "ResNet-50 stem and two stages, 2 classes",
    claimed_accuracy="accuracy 98.92% on GPT-ImgEval GenEval (555 GPT-4o images) and 96.32% on its "
    "ReasoningEdit subset (190) (the publisher's README); per-generator tables for the ForenSynths, "
    "Self-Synthesis, UniversalFakeDetect, GenImage and DiTFake test sets are in the paper",
    weights=[
        WeightsSource(f"https://github.com/Ouxiang-Li/SAFE/raw/{SAFE_COMMIT}/checkpoint/checkpoint-best.pth",
                      "checkpoint-best.pth", note="state dict under 'model', with optimizer, scaler, epoch and args"),
    ],
    checkpoint_key="model",
)

# bior1.3 analysis filters (PyWavelets' Wavelet("bior1.3").dec_lo / dec_hi)
_A, _B = 0.7071067811865476, 0.08838834764831845
BIOR13_DEC_LO = (-_B, _B, _A, _A, _B, -_B)
BIOR13_DEC_HI = (-0.0, 0.0, -_A, _A, -0.0, 0.0)


def _symmetric_index(n: int, before: int, after: int) -> np.ndarray:
    """Indices of a length-``n`` axis padded by half-sample symmetry (x[-1] = x[0])."""
    i = np.arange(-before, n + after)
    i = np.where(i < 0, -i - 1, i)
    return np.where(i >= n, 2 * n - i - 1, i)


def _analysis(x: torch.Tensor, dim: int) -> torch.Tensor:
    """One-level analysis along ``dim`` (2: rows of pixels, 3: columns), symmetric padding:
    channels become (low, high) pairs, each halved (``(n + 5) // 2`` long)."""
    c, n, k = x.shape[1], x.shape[dim], len(BIOR13_DEC_LO)
    out = (n + k - 1) // 2
    p = 2 * (out - 1) - n + k
    idx = torch.from_numpy(_symmetric_index(n, p // 2, (p + 1) // 2)).to(x.device)
    x = x.index_select(dim, idx)
    shape = [1, 1, 1, 1]
    shape[dim] = k
    # conv2d correlates: the filters reversed
    h0 = torch.tensor(BIOR13_DEC_LO[::-1], dtype=torch.float32, device=x.device).reshape(shape)
    h1 = torch.tensor(BIOR13_DEC_HI[::-1], dtype=torch.float32, device=x.device).reshape(shape)
    stride = (2, 1) if dim == 2 else (1, 2)
    return nn.functional.conv2d(x, torch.cat([h0, h1] * c, dim=0), stride=stride, groups=c)


def dwt_hh(x: torch.Tensor) -> torch.Tensor:
    """The diagonal detail band (high-pass along both axes) of a one-level bior1.3 DWT with
    symmetric padding, ``N x C x H x W`` -> ``N x C x (H + 5) // 2 x (W + 5) // 2``.

    >>> import pywt
    >>> x = torch.rand(1, 1, 20, 17, dtype=torch.float64).float()
    >>> ref = pywt.dwt2(x[0, 0].double().numpy(), "bior1.3", mode="symmetric")[1][2]
    >>> bool(np.allclose(dwt_hh(x)[0, 0].numpy(), ref, atol=1e-6))
    True
    """
    y = _analysis(_analysis(x, 3), 2)
    n, _, h, w = y.shape
    return y.reshape(n, -1, 4, h, w)[:, :, 3]


@register_detector("safe", "SAFE (Li et al., KDD 2025): DWT high-frequency band + truncated ResNet-50, "
                   "the publication's preprocessing (centre crop 256, no normalisation)", patch=256)
class SAFENet(nn.Module):
    published = SAFE_CARD

    def __init__(self, crop: int = 256, width: int = 64, blocks=(3, 4)):
        super().__init__()
        self.crop = int(crop)
        self.conv1 = nn.Conv2d(3, width, 3, 2, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.layer1 = bottleneck_stage(width, width, blocks[0], 1)
        self.layer2 = bottleneck_stage(width * 4, width * 2, blocks[1], 2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Linear(width * 2 * 4, 2)

    def prepare_input(self, image) -> torch.Tensor:
        """SAFE's evaluation transform of one ``H x W x 3`` uint8 RGB image."""
        from torchvision.transforms import functional as TF

        # CenterCrop commutes with ToTensor (pure indexing, zero padding)
        # np.array: a copy, decoded arrays may be read-only
        return TF.center_crop(TF.to_tensor(np.array(image)), [self.crop, self.crop])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from torchvision.transforms import functional as TF

        x = TF.resize(dwt_hh(x), [x.shape[-2], x.shape[-1]], antialias=True)  # transforms.Resize's defaults
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer2(self.layer1(x))
        z = self.fc1(torch.flatten(self.avgpool(x), 1))
        return z[:, 1] - z[:, 0]

    @staticmethod
    def checkpoint_filter_fn(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict]:
        """The file's ``'model'`` state dict as is; width read from ``conv1``."""
        conv1, fc1 = state.get("conv1.weight"), state.get("fc1.weight")
        if conv1 is None or fc1 is None or fc1.shape[0] != 2:
            raise CheckpointImportError("no conv1.weight / 2-class fc1.weight: not a SAFE state dict")
        idx = {s: {int(k.split(".")[1]) for k in state if k.startswith(f"{s}.")} for s in ("layer1", "layer2")}
        if not all(idx.values()):
            raise CheckpointImportError("no layer1 / layer2 weights: not a SAFE state dict")
        blocks = [1 + max(idx["layer1"]), 1 + max(idx["layer2"])]
        return state, {"patch": 256, "width": int(conv1.shape[0]), "blocks": blocks}


__all__ = ["SAFE_CARD", "SAFENet", "dwt_hh"]
