"""Model artifacts: a folder with ``config.json``, ``model.safetensors`` and ``card.json``.

The one reader and writer for every kind (generator, detector, autoencoder, feature net).
Never pickle: weights are safetensors, everything else JSON. Loading checks the artifact
``kind``, ``family`` and family version before any tensor is read, and the weights' sha256
against the card's when the card records it.

``config.json`` holds ``artifact_format``, ``kind``, ``family``, ``family_version``,
``toolkit_version`` and ``config`` (the constructor arguments). Folders written before
this format (generators: ``{"family", "version", "config"}``; the feature net: ``{"name",
"version", "config"}``) are read as the kind asked for.

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
    family_version: int = 1


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
    # safetensors refuses shared or non-contiguous storage; copies are cheap at these sizes
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()}
    # one metadata key: safetensors writes its metadata map in hash order, so two keys can
    # swap places between saves and the same weights would get another sha256 (checkpoint id)
    atomic_write_bytes(path / WEIGHTS, save(tensors, metadata={"family": family}))
    header = {
        "artifact_format": ARTIFACT_FORMAT,
        "kind": kind,
        "family": family,
        "family_version": version,
        "toolkit_version": __version__,
    }
    atomic_write_text(path / CONFIG, json.dumps({**header, "config": config}, indent=2, sort_keys=True) + "\n")
    sha = sha256_file(path / WEIGHTS)
    card = {"kind": kind, "family": family, **(card or {})}
    # after the caller's card, which may be a loaded artifact's: its hash and time are stale
    card["weights_sha256"] = sha
    card.pop("checkpoint_sha256", None)
    card["saved_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    atomic_write_text(path / CARD, json.dumps(card, indent=2, sort_keys=True, default=str) + "\n")
    return sha


def read_json(path: Path) -> dict[str, Any]:
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ArtifactError(f"{path}: missing (not an artifact folder?)") from None
    except json.JSONDecodeError as e:
        raise ArtifactError(f"{path}: not valid JSON ({e.msg})") from None
    if not isinstance(obj, dict):
        raise ArtifactError(f"{path}: expected a JSON object")
    return obj


def read_config(path: str | os.PathLike, kind: str | None = None) -> dict[str, Any]:
    """``config.json`` in this format; a folder of the earlier layout is read as ``kind``."""
    path = Path(path)
    if not (path / CONFIG).is_file():
        raise ArtifactError(f"{path}: not an artifact folder (no {CONFIG})")
    cfg = read_json(path / CONFIG)
    if "artifact_format" not in cfg and "version" in cfg and kind is not None:
        cfg = {"artifact_format": ARTIFACT_FORMAT, "kind": kind, "family": cfg.get("family", cfg.get("name")),
               "family_version": cfg["version"], "toolkit_version": cfg.get("toolkit_version"),
               "config": cfg.get("config", {})}
    return cfg


def load_artifact(
    path: str | os.PathLike,
    *,
    kind: str,
    family: str | None = None,
    max_version: int | None = None,
    min_version: int | None = None,
    device: str = "cpu",
) -> Artifact:
    """Read an artifact, checking kind, family, version and the card's sha256 before use."""
    from safetensors.torch import load_file

    path = Path(path)
    cfg = read_config(path, kind)
    if cfg.get("artifact_format") != ARTIFACT_FORMAT:
        raise ArtifactError(f"{path}: artifact format {cfg.get('artifact_format')!r} is not {ARTIFACT_FORMAT}")
    if cfg.get("kind") != kind:
        raise ArtifactError(f"{path}: is a {cfg.get('kind')!r} artifact, expected a {kind}")
    if family is not None and cfg.get("family") != family:
        raise ArtifactError(f"{path}: family {cfg.get('family')!r}, expected {family!r}")
    version = int(cfg.get("family_version", 1))
    if max_version is not None and version > max_version:
        raise ArtifactError(
            f"{path}: {cfg['family']} version {version} is newer than this "
            f"toolkit supports ({max_version}); upgrade genvis-trust"
        )
    if min_version is not None and version < min_version:
        raise ArtifactError(f"{path}: {cfg['family']} version {version} is older than this toolkit reads ({min_version})")
    if not (path / WEIGHTS).is_file():
        raise ArtifactError(f"{path / WEIGHTS}: missing")
    card = read_json(path / CARD) if (path / CARD).is_file() else {}
    sha = sha256_file(path / WEIGHTS)
    promised = card.get("weights_sha256") or card.get("checkpoint_sha256")  # the latter: earlier generator cards
    if promised and promised != sha:
        raise ArtifactError(f"{path / WEIGHTS}: sha256 {sha[:16]}… differs from the card's {promised[:16]}…")
    tensors = load_file(str(path / WEIGHTS), device=device)
    return Artifact(
        path=path,
        kind=kind,
        family=cfg["family"],
        config=cfg.get("config", {}),
        tensors=tensors,
        card=card,
        sha256=sha,
        family_version=version,
    )
