"""What ``detectors list`` says about each family: installed or not, the licence, the fidelity
*measured* against the reference code, and the accuracy the *publisher claims*.

Fidelity is read from ``published-fidelity.json`` (written by the fidelity benchmarks:
``{"families": {NAME: {"max_abs_logit_diff", "reference_commit", ...}}}``): the copy shipped in
the package's assets first, else ``benchmarks/results/`` of a source checkout. A family without
an entry is "not measured"; nothing here is estimated.

>>> rows = {r["family"]: r for r in family_catalogue()}
>>> rows["cnn"]["origin"], rows["cnn"]["fidelity"]["status"]
('toolkit', 'not applicable')
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from genvis_trust.artifacts import ArtifactError, read_config

from .detector import list_bundled
from .installed import list_installed
from .published import PublishedCard
from .registry import list_families

__all__ = ["FIDELITY_FILES", "FIDELITY_TARGET", "family_catalogue", "read_fidelity"]

_PKG = Path(__file__).resolve().parent.parent
FIDELITY_FILES = [_PKG / "assets" / "published-fidelity.json", _PKG.parent / "benchmarks" / "results" / "published-fidelity.json"]
FIDELITY_TARGET = 1e-4  # largest |logit difference| to the reference code, fp32 (issue 20)


def read_fidelity() -> tuple[dict[str, dict[str, Any]], str | None]:
    """``({family: measurement}, file read)`` from the first fidelity file that exists."""
    for f in FIDELITY_FILES:
        if f.is_file():
            try:
                data = json.loads(f.read_text(encoding="utf-8"))
            except (OSError, ValueError) as e:
                raise ValueError(f"{f}: unreadable fidelity results ({e})") from None
            return dict(data.get("families") or {}), str(f)
    return {}, None


def _fidelity(name: str, card: PublishedCard | None, measured: dict, source: str | None) -> dict[str, Any]:
    if card is None:
        return {"status": "not applicable", "text": "- (the toolkit's own)"}
    m = measured.get(name)
    if not m or m.get("max_abs_logit_diff") is None:
        return {"status": "not measured", "text": "not measured"}
    d = float(m["max_abs_logit_diff"])
    ref = str(m.get("reference_commit") or "")
    out = {"status": "measured", "max_abs_logit_diff": d, "reference_commit": ref or None, "target": FIDELITY_TARGET,
           "within_target": d <= FIDELITY_TARGET, "source": source}
    for k in ("images", "command", "date"):
        if k in m:
            out[k] = m[k]
    other = bool(ref and card.commit and not card.commit.startswith(ref) and not ref.startswith(card.commit))
    out["commit_matches_card"] = not other
    out["text"] = (f"max |Δlogit| {d:.1e} vs reference {ref[:10] or '?'}" + ("" if d <= FIDELITY_TARGET else f" (above the {FIDELITY_TARGET:g} target)")
                   + (f"; the card's commit is {card.commit[:10]}" if other else ""))
    return out


def family_catalogue() -> list[dict[str, Any]]:
    """One row per registered family (sorted by name)."""
    measured, source = read_fidelity()
    installed: dict[str, list[str]] = {}
    for n, p in list_installed().items():
        try:
            installed.setdefault(read_config(p).get("family"), []).append(n)
        except (ArtifactError, OSError, ValueError):
            continue
    bundled: dict[str, list[str]] = {}
    for n, p in list_bundled().items():
        try:
            bundled.setdefault(read_config(p).get("family"), []).append(n)
        except (ArtifactError, OSError, ValueError):
            continue
    rows = []
    for name, fam in list_families().items():
        card = getattr(fam.cls, "published", None)
        card = card if isinstance(card, PublishedCard) else None
        row: dict[str, Any] = {
            "family": name,
            "description": fam.description,
            "origin": "published" if card else "toolkit",
            "input": "whole image (the publisher's preprocessing)" if card else f"{fam.patch}px tiles",
            "patch": fam.patch,
            "defaults": fam.defaults,
            "installed": installed.get(name, []),
            "bundled": bundled.get(name, []),
            "importable": fam.checkpoint_filter_fn is not None,
            "fidelity": _fidelity(name, card, measured, source),
        }
        if card is not None:
            row.update(
                licence=card.licence, commercial_use=card.commercial_use, publication=card.publication,
                repository=card.repository, commit=card.commit, preprocessing=card.preprocessing,
                claimed_accuracy={"claim": card.claimed_accuracy, "by": "the publisher"},
                variants=[w.variant for w in card.weights], requires=list(card.requires),
            )
        else:
            row.update(licence="the toolkit's", commercial_use=True, claimed_accuracy=None, variants=[])
        rows.append(row)
    return rows
