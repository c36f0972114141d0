"""Model artifacts: a folder with ``config.json``, ``model.safetensors`` and ``card.json``.

Shared by generators and detectors. Never pickle: weights are safetensors, everything
else JSON. Loading checks the artifact ``kind`` (generator/detector), ``family`` and
format ``version`` before any tensor is read.

>>> import tempfile, torch
>>> d = tempfile.mkdtemp()
>>> _ = save_artifact(d, kind="detector", family="demo", config={"width": 4},
...                   tensors={"w": torch.ones(2)}, card={"about": "doctest"})
>>> a = load_artifact(d, kind="detector")
>>> a.family, a.config["width"], a.tensors["w"].tolist()
('demo', 4, [1.0, 1.0])
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from genvis_trust import __version__
from genvis_trust.atomic import atomic_write_bytes, atomic_write_text
from genvis_trust.io import sha256_file

CONFIG, WEIGHTS, CARD = "config.json", "model.safetensors", "card.json"
ARTIFACT_FORMAT = 1


class ArtifactError(ValueError):
    """An artifact folder that is missing, malformed, or of the wrong kind/family/version."""


@dataclass
class Artifact:
    path: Path
    kind: str
    family: str
    config: dict[str, Any]  # the constructor arguments of the model
    tensors: dict[str, Any]  # name -> torch.Tensor
    card: dict[str, Any]
    sha256: str  # of model.safetensors: the checkpoint id recorded downstream


def save_artifact(
    path: str | os.PathLike,
    *,
    kind: str,
    family: str,
    config: dict[str, Any],
    tensors: dict[str, Any],
    card: dict[str, Any] | None = None,
    version: int = 1,
) -> str:
    """Write the three files atomically; returns the sha256 of the weights file."""
    from safetensors.torch import save

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    atomic_write_bytes(path / WEIGHTS, save(tensors, metadata={"kind": kind, "family": family}))
    header = {
        "artifact_format": ARTIFACT_FORMAT,
        "kind": kind,
        "family": family,
        "family_version": version,
        "toolkit_version": __version__,
    }
    atomic_write_text(path / CONFIG, json.dumps({**header, "config": config}, indent=2, sort_keys=True) + "\n")
    sha = sha256_file(path / WEIGHTS)
    card = {
        "kind": kind,
        "family": family,
        "weights_sha256": sha,
        "saved_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        **(card or {}),
    }
    atomic_write_text(path / CARD, json.dumps(card, indent=2, sort_keys=True, default=str) + "\n")
    return sha


def read_config(path: str | os.PathLike) -> dict[str, Any]:
    path = Path(path)
    if not (path / CONFIG).is_file():
        raise ArtifactError(f"{path}: not an artifact folder (no {CONFIG})")
    try:
        return json.loads((path / CONFIG).read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ArtifactError(f"{path / CONFIG}: not valid JSON ({e.msg})") from None


def load_artifact(
    path: str | os.PathLike,
    *,
    kind: str,
    family: str | None = None,
    max_version: int | None = None,
    device: str = "cpu",
) -> Artifact:
    """Read an artifact, checking kind, family and version before loading tensors."""
    from safetensors.torch import load_file

    path = Path(path)
    cfg = read_config(path)
    if cfg.get("artifact_format") != ARTIFACT_FORMAT:
        raise ArtifactError(f"{path}: artifact format {cfg.get('artifact_format')!r} is not {ARTIFACT_FORMAT}")
    if cfg.get("kind") != kind:
        raise ArtifactError(f"{path}: is a {cfg.get('kind')!r} artifact, expected a {kind}")
    if family is not None and cfg.get("family") != family:
        raise ArtifactError(f"{path}: family {cfg.get('family')!r}, expected {family!r}")
    if max_version is not None and int(cfg.get("family_version", 1)) > max_version:
        raise ArtifactError(
            f"{path}: {cfg['family']} version {cfg['family_version']} is newer than this "
            f"toolkit supports ({max_version}); upgrade genvis-trust"
        )
    if not (path / WEIGHTS).is_file():
        raise ArtifactError(f"{path}: {WEIGHTS} is missing")
    card = {}
    if (path / CARD).is_file():
        card = json.loads((path / CARD).read_text(encoding="utf-8"))
    tensors = load_file(str(path / WEIGHTS), device=device)
    return Artifact(
        path=path,
        kind=kind,
        family=cfg["family"],
        config=cfg.get("config", {}),
        tensors=tensors,
        card=card,
        sha256=sha256_file(path / WEIGHTS),
    )
