"""Import published detector checkpoints into the toolkit's artifact format.

Any family with a ``checkpoint_filter_fn`` beside it (see :mod:`.registry`) can be
imported; among them the published families, e.g. ``cnndetection`` (Wang et al. 2020:
``torch.save({'model': state_dict, ...})`` of torchvision ``resnet50`` with ``fc`` -> 1 logit),
``npr`` (Tan et al. 2024: a raw state dict) and ``safe`` (Li et al. 2025: under ``'model'``).
Keys may carry a ``module.`` prefix. A family renamed since (``renamed_to``: ``resnet50`` ->
``cnndetection``) imports as its new name.

Files are read with ``torch.load(weights_only=True)``: tensors and plain containers only,
never arbitrary pickled objects. ``argparse.Namespace`` is allowed as data (training scripts
save their arguments beside the weights, e.g. SAFE's ``checkpoint-best.pth``): it only holds
attributes, whose values the weights-only reader still restricts. ``.safetensors`` files are
read directly.
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

__all__ = ["CheckpointImportError", "import_checkpoint", "importable_families", "read_state_dict", "resolve_arch"]


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
    import argparse

    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
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


def resolve_arch(arch: str) -> str:
    """The family a published checkpoint of ``arch`` is imported as (``renamed_to`` followed)."""
    fams = list_families()
    seen = {arch}
    while arch in fams and (new := getattr(fams[arch].cls, "renamed_to", None)) and new not in seen:
        arch = new
        seen.add(arch)
    return arch


def import_checkpoint(path: str | os.PathLike, arch: str, *, patch: int | None = None, key: str | None = None) -> Detector:
    """Build a :class:`Detector` of ``arch`` from a published checkpoint file (uncalibrated);
    ``key``: where the state dict sits in the file (default: found, see :func:`read_state_dict`).
    A published family's artifact card carries its :class:`~.published.PublishedCard`."""
    archs = importable_families()
    asked, arch = arch, resolve_arch(arch)
    if arch not in archs:
        raise CheckpointImportError(f"--arch must be one of {tuple(archs)}, got {asked!r}")
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
    if asked != arch:
        det.card["renamed_from"] = asked
    if det.published is not None:
        det.card["published"] = det.published
    return det
