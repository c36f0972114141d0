"""Layers import downward only: no circle between modules, no module borrowing another's
``_private`` name, and scoring (the engine) below scan and audit.

Every import counts: top-level ones, those inside functions, and those under ``if
TYPE_CHECKING:``. A type-only import is still a dependency a reader has to follow (the
annotation names the other module's type), and a circle through one breaks as soon as
someone moves the import out of the ``if`` to use the type at run time; so it is held to the
same rule. An import's edge goes to the module it names: ``from pkg import sub`` to
``pkg.sub`` when ``sub`` is a module of ``pkg``, else to ``pkg`` (its ``__init__``), which
is what Python runs. Importing ``pkg.sub`` also runs ``pkg/__init__``, so it counts as an
import of ``pkg`` too, except from a module inside ``pkg`` (there the package is already
being imported) and for the top package, whose ``__init__`` imports nothing.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

import genvis_trust

PKG = Path(genvis_trust.__file__).parent


# --------------------------------------------------------------------------- the reader


def _module_name(root: Path, path: Path) -> str:
    rel = path.relative_to(root.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules_of(root: Path) -> dict[str, Path]:
    """Every module of the package at ``root``, by dotted name."""
    return {_module_name(root, p): p for p in sorted(root.rglob("*.py"))}


def _resolve(mod: str, is_pkg: bool, level: int, target: str | None) -> str:
    if level == 0:
        return target or ""
    base = mod.split(".")
    base = base if is_pkg else base[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join(base + ([target] if target else []))


def imports_of(root: Path) -> tuple[dict[str, set[str]], list[tuple[str, str, str, int]]]:
    """``(graph, private)``: for each module the package modules it imports, and every use of
    another module's ``_private`` name as ``(module, other module, name, line)``."""
    mods = modules_of(root)
    graph: dict[str, set[str]] = {m: set() for m in mods}
    private: list[tuple[str, str, str, int]] = []
    prefix = root.name
    for mod, path in mods.items():
        is_pkg = path.name == "__init__.py"
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        aliases: dict[str, str] = {}  # local name -> package module it stands for
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for a in node.names:
                    if a.name.split(".")[0] != prefix:
                        continue
                    graph[mod].add(a.name)
                    aliases[a.asname or a.name] = a.name
            elif isinstance(node, ast.ImportFrom):
                src = _resolve(mod, is_pkg, node.level, node.module)
                if src.split(".")[0] != prefix:
                    continue
                for a in node.names:
                    sub = f"{src}.{a.name}"
                    if sub in mods:
                        graph[mod].add(sub)
                        aliases[a.asname or a.name] = sub
                        continue
                    graph[mod].add(src)
                    if _is_private(a.name) and src != mod:
                        private.append((mod, src, a.name, node.lineno))
        for node in ast.walk(tree):  # other_module._name
            if isinstance(node, ast.Attribute) and _is_private(node.attr):
                owner = _dotted(node.value)
                target = aliases.get(owner) if owner else None
                if owner and target is None and owner in mods:
                    target = owner
                if target and target != mod:
                    private.append((mod, target, node.attr, node.lineno))
    for mod in graph:
        # importing pkg.sub runs pkg/__init__ first: an import of pkg too, unless the importer
        # lives inside pkg (then pkg is already being imported, not by this module's choice)
        named = {m for m in graph[mod] if m in mods}
        runs = {p for m in named for p in _parents(m) if not _inside(mod, p)}
        graph[mod] = {m for m in named | runs if m in mods and m != mod and m != prefix}
    return graph, private


def _parents(mod: str) -> list[str]:
    parts = mod.split(".")
    return [".".join(parts[:k]) for k in range(1, len(parts))]


def _inside(mod: str, pkg: str) -> bool:
    return mod == pkg or mod.startswith(pkg + ".")


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _dotted(node: ast.AST) -> str | None:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        return ".".join([node.id, *reversed(parts)])
    return None


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted:
    every circle lies inside one of them."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    sys.setrecursionlimit(max(10_000, sys.getrecursionlimit()))

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(out)


def _describe(graph: dict[str, set[str]], comp: list[str]) -> str:
    inside = set(comp)
    edges = [f"{a} -> {b}" for a in comp for b in sorted(graph[a]) if b in inside]
    return "circle between " + ", ".join(comp) + " (" + "; ".join(edges) + ")"


def violations(root: Path) -> list[str]:
    graph, private = imports_of(root)
    msgs = [_describe(graph, c) for c in cycles(graph)]
    msgs += [f"{m} uses {other}.{name} (line {line}), a private name of another module"
             for m, other, name, line in private]
    return msgs


# --------------------------------------------------------------------------- the package


def test_no_circles_and_no_private_imports():
    found = violations(PKG)
    assert not found, "\n".join(found)


def test_reader_sees_every_kind_of_import():
    graph, _ = imports_of(PKG)
    # a top-level import, one inside a function and a TYPE_CHECKING one
    assert "genvis_trust.scoring.engine" in graph["genvis_trust.scan"]
    assert "genvis_trust.detectors.evaluation" in graph["genvis_trust.scan"]  # imported in _stability
    assert "genvis_trust.provenance.verify" in graph["genvis_trust.scoring.engine"]  # TYPE_CHECKING
    assert len(graph) >= 90


def test_scoring_does_not_import_scan_audit_or_service():
    graph, _ = imports_of(PKG)
    upward = ("genvis_trust.scan", "genvis_trust.audit", "genvis_trust.service", "genvis_trust.ray_engine")
    scoring = [m for m in graph if m.startswith("genvis_trust.scoring")]
    assert scoring
    for m in scoring:
        bad = sorted(d for d in graph[m] if d.startswith(upward))
        assert not bad, f"{m} imports {bad}"


def test_no_alias_module_is_left():
    # scoring/ray_engine.py was an alias of genvis_trust.ray_engine (removed in issue 23)
    assert not (PKG / "scoring" / "ray_engine.py").exists()
    from genvis_trust.ray_engine import run_audit_ray  # the one path, the README's

    assert callable(run_audit_ray)


# --------------------------------------------------------------------------- the test fails when it should


def _plant(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "planted"
    for rel, text in {"__init__.py": "", **files}.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text, encoding="utf-8")
    return root


def test_planted_circle_is_named(tmp_path):
    root = _plant(tmp_path, {
        "low.py": "def f():\n    from planted.sub.high import g\n    return g\n",
        "sub/__init__.py": "from .high import g\n",
        "sub/high.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ..low import f\ng = 1\n",
        "other.py": "from planted import low\n",
    })
    found = violations(root)
    # planted.low imports planted.sub.high, which runs planted/sub/__init__ too
    assert found == ["circle between planted.low, planted.sub, planted.sub.high "
                     "(planted.low -> planted.sub; planted.low -> planted.sub.high; planted.sub -> planted.sub.high; "
                     "planted.sub.high -> planted.low)"]


def test_planted_circle_through_a_package_init(tmp_path):
    root = _plant(tmp_path, {
        "a.py": "import planted.b\n",
        "b/__init__.py": "from planted.b.c import x\n",
        "b/c.py": "def h():\n    from planted import a\nx = 1\n",
    })
    assert violations(root) == ["circle between planted.a, planted.b, planted.b.c "
                                "(planted.a -> planted.b; planted.b -> planted.b.c; planted.b.c -> planted.a)"]


def test_planted_private_import_is_named(tmp_path):
    root = _plant(tmp_path, {
        "base.py": "def _helper():\n    return 1\n__all__ = []\n",
        "user.py": "def f():\n    from .base import _helper\n    return _helper()\n",
        "user2.py": "import planted.base as b\nfrom planted import base\n"
                    "def g():\n    return b._helper() + base._helper()\n",
        "fine.py": "from planted.base import __all__\nclass A:\n    def _own(self):\n        return self._own\n",
    })
    assert violations(root) == [
        "planted.user uses planted.base._helper (line 2), a private name of another module",
        "planted.user2 uses planted.base._helper (line 4), a private name of another module",
        "planted.user2 uses planted.base._helper (line 4), a private name of another module",
    ]


@pytest.mark.parametrize("text", ["import planted.base\nplanted.base._x\n", "from planted import base as bb\nbb._x\n"])
def test_private_attribute_through_any_alias(tmp_path, text):
    root = _plant(tmp_path, {"base.py": "_x = 1\n", "user.py": text})
    assert violations(root) == ["planted.user uses planted.base._x (line 2), a private name of another module"]
