"""Generator artifacts, written and read by :mod:`genvis_trust.artifacts` (the one format
for every kind: ``config.json`` + ``model.safetensors`` + ``card.json``, never pickle).

- ``config.json``: kind ``generator``, the family, its version and the constructor kwargs;
- ``model.safetensors``: the sampling weights; its sha256 is the checkpoint id;
- ``card.json``: data source, steps, seed, wall time, metrics, the exact command;
- ``train_state.safetensors`` (training folders only, not shipped): full module state,
  optimizer states and the step, so training resumes where it stopped.

Loading checks the family is registered, the version matches, and (when the card records
it) that the weights' sha256 is the one the card promises.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from genvis_trust.artifacts import (
    CARD,
    CONFIG,
    WEIGHTS,
    ArtifactError,
    load_artifact,
    save_artifact,
)
from genvis_trust.atomic import atomic_path

from .base import Generator, GeneratorError, generator_class, list_bundled, resolve_device

TRAIN_STATE = "train_state.safetensors"
KIND = "generator"

__all__ = ["CARD", "CONFIG", "TRAIN_STATE", "WEIGHTS", "LoadedGenerator", "load_generator", "read_json",
           "resolve_artifact", "save_generator", "load_train_state", "save_train_state"]


def save_generator(model: Generator, out: str | Path, card: dict[str, Any] | None = None) -> str:
    """Write the artifact folder; returns the weights' sha256 (the checkpoint id)."""
    full_card = {"params": model.num_params(), **(card or {})}
    sha = save_artifact(out, kind=KIND, family=model.family, config=model.config,
                        tensors=model.artifact_state_dict(), card=full_card, version=model.version)
    return sha


def read_json(path: Path) -> dict[str, Any]:
    from genvis_trust.artifacts import read_json as read

    try:
        return read(path)
    except ArtifactError as e:
        raise GeneratorError(str(e)) from None


def resolve_artifact(name_or_path: str | Path) -> Path:
    """A bundled model name or an artifact folder -> the folder."""
    p = Path(name_or_path)
    if (p / CONFIG).is_file():
        return p
    bundled = list_bundled()
    if str(name_or_path) in bundled:
        return bundled[str(name_or_path)]
    if p.exists():
        raise GeneratorError(f"{p}: not a generator artifact (no {CONFIG})")
    names = ", ".join(bundled) or "none installed"
    raise GeneratorError(f"{name_or_path!r} is neither an artifact folder nor a bundled model ({names})")


class LoadedGenerator:
    """A loaded model plus where it came from (folder, card, checkpoint sha256)."""

    def __init__(self, model: Generator, path: Path, card: dict[str, Any], sha256: str, name: str):
        self.model, self.path, self.card, self.sha256, self.name = model, path, card, sha256, name


def load_generator(name_or_path: str | Path, device: str | torch.device = "auto", *, info: bool = False):
    """Load a bundled model by name or an artifact folder; returns the model in eval mode
    (or a :class:`LoadedGenerator` with ``info=True``)."""
    from genvis_trust.artifacts import read_config

    path = resolve_artifact(name_or_path)
    try:
        cls = generator_class(str(read_config(path, KIND).get("family")))
        art = load_artifact(path, kind=KIND, family=cls.family, min_version=cls.version, max_version=cls.version)
    except ArtifactError as e:
        raise GeneratorError(str(e)) from None
    model = cls(**art.config)
    try:
        model.load_artifact_state_dict(art.tensors)
    except RuntimeError as e:
        raise GeneratorError(f"{path / WEIGHTS}: weights do not fit the config: {e}") from None
    model = model.to(resolve_device(device)).eval()
    if info:
        return LoadedGenerator(model, path, art.card, art.sha256, Path(name_or_path).name)
    return model


# --------------------------------------------------------------------------- train state


def save_train_state(
    model: Generator, optimizers: dict[str, torch.optim.Optimizer], step: int, out: str | Path
) -> None:
    """Full module state + optimizer states in safetensors; non-tensor parts in its metadata."""
    tensors: dict[str, torch.Tensor] = {f"model.{k}": v for k, v in model.state_dict().items()}
    groups: dict[str, Any] = {}
    for name, opt in optimizers.items():
        sd = opt.state_dict()
        groups[name] = sd["param_groups"]
        for idx, st in sd["state"].items():
            for key, val in st.items():
                t = val if torch.is_tensor(val) else torch.tensor(val)
                tensors[f"opt.{name}.{idx}.{key}"] = t
    meta = {"step": str(step), "param_groups": json.dumps(groups), "family": model.family}
    # a kill mid-save must leave the previous checkpoint whole, or --resume has nothing to load
    with atomic_path(Path(out) / TRAIN_STATE) as tmp:
        save_file({k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()}, str(tmp), metadata=meta)


def load_train_state(
    model: Generator, optimizers: dict[str, torch.optim.Optimizer], folder: str | Path
) -> int:
    """Restore what :func:`save_train_state` wrote; returns the step to continue from."""
    from safetensors import safe_open

    path = Path(folder) / TRAIN_STATE
    if not path.is_file():
        raise GeneratorError(f"{path}: missing; nothing to resume")
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    if meta.get("family") != model.family:
        raise GeneratorError(f"{path}: train state of {meta.get('family')!r}, not {model.family!r}")
    dev = model.device
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")}, strict=True)
    groups = json.loads(meta["param_groups"])
    for name, opt in optimizers.items():
        state: dict[int, dict[str, Any]] = {}
        prefix = f"opt.{name}."
        for k, v in tensors.items():
            if k.startswith(prefix):
                idx, key = k[len(prefix) :].split(".", 1)
                state.setdefault(int(idx), {})[key] = v if key == "step" else v.to(dev)
        opt.load_state_dict({"state": state, "param_groups": groups[name]})
    return int(meta["step"])
