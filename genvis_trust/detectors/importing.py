"""Import published detector checkpoints into the toolkit's artifact format.

Supported layouts:
- ``resnet50`` (CNNDetection, Wang et al. 2020): ``torch.save({'model': state_dict, ...})``
  of torchvision ``resnet50`` with ``fc`` -> 1 logit; keys may carry a ``module.`` prefix;
- ``npr`` (Tan et al. 2024): a raw state dict (``conv1``, ``bn1``, ``layer1``, ``layer2``, ``fc1``).

Files are read with ``torch.load(weights_only=True)``: tensors and plain containers only,
never arbitrary pickled objects. ``.safetensors`` files are read directly.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from genvis_trust.io import sha256_file

from .detector import Detector

ARCHS = ("resnet50", "npr")


class CheckpointImportError(ValueError):
    """A checkpoint that does not fit the requested architecture."""


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointImportError(f"{path}: no such file")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    try:
        obj: Any = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # unpickling refused or malformed: say so, never fall back to full pickle
        raise CheckpointImportError(f"{path}: not a loadable weights-only checkpoint ({type(e).__name__}: {e})") from None
    for key in ("model", "state_dict", "net"):
        if isinstance(obj, dict) and key in obj and isinstance(obj[key], dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointImportError(f"{path}: expected a state dict of tensors (optionally under 'model')")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def import_checkpoint(path: str | os.PathLike, arch: str, *, patch: int | None = None) -> Detector:
    """Build a :class:`Detector` of ``arch`` from a published checkpoint file (uncalibrated)."""
    if arch not in ARCHS:
        raise CheckpointImportError(f"--arch must be one of {ARCHS}, got {arch!r}")
    state = read_state_dict(path)
    if arch == "resnet50":
        det = Detector.create("resnet50", patch=patch or 224, device="cpu")
        state = {f"model.{k}": v for k, v in state.items()}
    else:
        conv1 = state.get("conv1.weight")
        if conv1 is None:
            raise CheckpointImportError(f"{path}: no conv1.weight: not an NPR state dict")
        width = int(conv1.shape[0])
        blocks = [_count_blocks(state, "layer1"), _count_blocks(state, "layer2")]
        det = Detector.create("npr", patch=patch or 224, device="cpu", width=width, blocks=blocks)
    expected = det.net.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        raise CheckpointImportError(
            f"{path}: does not fit {arch}: {len(missing)} missing (e.g. {missing[:3]}), "
            f"{len(unexpected)} unexpected (e.g. {unexpected[:3]})"
        )
    for k, v in state.items():
        if tuple(v.shape) != tuple(expected[k].shape):
            raise CheckpointImportError(f"{path}: {k} has shape {tuple(v.shape)}, {arch} expects {tuple(expected[k].shape)}")
    det.net.load_state_dict(state)
    det.card = {"imported_from": str(path), "source_sha256": sha256_file(path), "arch": arch}
    return det


def _count_blocks(state: dict, layer: str) -> int:
    idx = {int(k.split(".")[1]) for k in state if k.startswith(layer + ".")}
    if not idx:
        raise CheckpointImportError(f"no {layer} weights: not an NPR state dict")
    return max(idx) + 1
