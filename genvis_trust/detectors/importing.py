"""Import published detector checkpoints into the toolkit's artifact format.

Any family with a ``checkpoint_filter_fn`` beside it (see :mod:`.registry`) can be
imported; today ``resnet50`` (CNNDetection, Wang et al. 2020: ``torch.save({'model':
state_dict, ...})`` of torchvision ``resnet50`` with ``fc`` -> 1 logit) and ``npr`` (Tan et
al. 2024: a raw state dict). Keys may carry a ``module.`` prefix.

Files are read with ``torch.load(weights_only=True)``: tensors and plain containers only,
never arbitrary pickled objects. ``.safetensors`` files are read directly.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import torch

from genvis_trust.io import sha256_file

from .detector import Detector
from .registry import CheckpointImportError, list_families

__all__ = ["CheckpointImportError", "import_checkpoint", "importable_families", "read_state_dict"]


def importable_families() -> list[str]:
    """Families that say how to read a published checkpoint (``checkpoint_filter_fn``)."""
    return [n for n, f in list_families().items() if f.checkpoint_filter_fn is not None]


def read_state_dict(path: str | os.PathLike, key: str | None = None) -> dict[str, torch.Tensor]:
    """The state dict in a published file: at ``key`` (the family card's ``checkpoint_key``)
    when given, else at the top level or under ``model`` / ``state_dict`` / ``net``."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointImportError(f"{path}: no such file")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    try:
        obj: Any = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:  # refused by weights_only: never fall back to full pickle
        raise CheckpointImportError(f"{path}: refused, not a weights-only checkpoint: it holds more than tensors and plain containers "
                                    f"({_refusal_reason(e)}); unpickling it could run code from the file") from None
    except Exception as e:  # malformed
        raise CheckpointImportError(f"{path}: not a loadable weights-only checkpoint ({type(e).__name__}: {e})") from None
    if key is not None:
        if not (isinstance(obj, dict) and isinstance(obj.get(key), dict)):
            raise CheckpointImportError(f"{path}: expected the state dict under {key!r} (the published layout)")
        obj = obj[key]
    else:
        for k in ("model", "state_dict", "net"):
            if isinstance(obj, dict) and k in obj and isinstance(obj[k], dict):
                obj = obj[k]
                break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointImportError(f"{path}: expected a state dict of tensors (optionally under 'model')")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def _refusal_reason(e: Exception) -> str:
    """The line of torch's weights_only refusal that names what was refused."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    for ln in lines:
        if "WeightsUnpickler error:" in ln:
            return ln.split("WeightsUnpickler error:", 1)[1].split(" Please use", 1)[0].strip()
    return lines[-1] if lines else type(e).__name__


def import_checkpoint(path: str | os.PathLike, arch: str, *, patch: int | None = None, key: str | None = None) -> Detector:
    """Build a :class:`Detector` of ``arch`` from a published checkpoint file (uncalibrated);
    ``key``: where the state dict sits in the file (default: found, see :func:`read_state_dict`)."""
    archs = importable_families()
    if arch not in archs:
        raise CheckpointImportError(f"--arch must be one of {tuple(archs)}, got {arch!r}")
    state = read_state_dict(path, key)
    try:
        state, config = list_families()[arch].checkpoint_filter_fn(state)
    except CheckpointImportError as e:
        raise CheckpointImportError(f"{path}: {e}") from None
    if patch:
        config = {**config, "patch": patch}
    det = Detector.create(arch, device="cpu", **config)
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
