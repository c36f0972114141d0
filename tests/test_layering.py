"""Layers import downward only: scoring (the engine) sits below scan and audit."""

from __future__ import annotations

import ast
from pathlib import Path

import genvis_trust

PKG = Path(genvis_trust.__file__).parent
ALIASES = {"scoring/ray_engine.py"}  # kept only because the path was documented


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module if node.level == 0 else "." * node.level + node.module)
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
    return names


def test_scoring_does_not_import_scan_audit_or_service():
    upward = ("genvis_trust.scan", "genvis_trust.audit", "genvis_trust.service", "genvis_trust.ray_engine",
              "..scan", "..audit", "..service")
    files = [p for p in (PKG / "scoring").glob("*.py") if p.relative_to(PKG).as_posix() not in ALIASES]
    assert files
    for p in files:
        bad = [m for m in _imports(p) if m.startswith(upward)]
        assert not bad, f"{p.name} imports {bad}"


def test_documented_ray_path_is_an_alias():
    from genvis_trust.ray_engine import run_audit_ray
    from genvis_trust.scoring.ray_engine import run_audit_ray as documented

    assert documented is run_audit_ray
