"""Images on disk: a plain folder, the ForenSynths and GenImage benchmark layouts.

- plain folder: every image below it; one label for all (``label=``), or none;
- ForenSynths / CNNDetection: ``[train|val|test/][class/]0_real|1_fake/*``;
- GenImage: ``[generator/]train|val/nature|ai/*``.

Layouts that name a split (train/val/test folders) keep it; otherwise splits are
assigned by group, where the group is the image's relative path.
"""

from __future__ import annotations

import os
from functools import partial
from pathlib import Path

import numpy as np

from genvis_trust.io import IMAGE_EXTENSIONS, load_image

from .base import LABELS, SPLITS, Item, Source, SourceError

_REAL_DIRS = {"0_real": "real", "1_fake": "generated"}
_GENIMAGE_DIRS = {"nature": "real", "ai": "generated"}
_SPLIT_ALIASES = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}


def iter_image_files(root: Path, *, all_files: bool = False) -> list[Path]:
    """Image files below ``root`` (by extension unless ``all_files``), sorted, no hidden ones.

    Symlinks pointing outside ``root`` are not followed.
    """
    root = root.resolve()
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for f in sorted(filenames):
            if f.startswith("."):
                continue
            p = Path(dirpath) / f
            if not all_files and p.suffix.lower() not in IMAGE_EXTENSIONS:
                continue
            if p.is_symlink() and not p.resolve().is_relative_to(root):
                continue
            out.append(p)
    return out


def _load_file(path: Path, max_pixels: int) -> np.ndarray:
    return load_image(path, max_pixels=max_pixels).array


class _FileSource(Source):
    def __init__(self, root: str | os.PathLike, *, max_pixels: int = 64_000_000, **options):
        super().__init__(**options)
        self.root = Path(root)
        if not self.root.is_dir():
            raise SourceError(f"{self.root}: not a folder")
        self.max_pixels = max_pixels

    def spec(self):
        return {**super().spec(), "root": str(self.root)}

    def _item(self, path: Path, label, split=None, meta=None) -> Item:
        # ``path`` lies below the resolved root (iter_image_files); resolving it again would
        # turn an in-root symlink into its target's key and duplicate that key.
        rel = path.relative_to(self.root.resolve()).as_posix()
        return Item(
            key=rel,
            group=rel,
            load=partial(_load_file, path, self.max_pixels),
            label=label,
            split=split,
            meta={"path": rel, **(meta or {})},
        )


class FolderSource(_FileSource):
    """Every image below a folder, one label for all."""

    name = "folder"
    description = "every image below a folder (recursive), one label for all"

    def __init__(self, root, *, label: str | None = None, **options):
        if label not in (None, *LABELS):
            raise SourceError(f"label must be one of {LABELS} or None, got {label!r}")
        super().__init__(root, **options)
        self.label = label

    def list_items(self) -> list[Item]:
        items = [self._item(p, self.label) for p in iter_image_files(self.root)]
        if not items:
            exts = " ".join(sorted(IMAGE_EXTENSIONS))
            raise SourceError(f"{self.root}: no image files below this folder (extensions: {exts})")
        return items


class ForenSynthsSource(_FileSource):
    """``0_real``/``1_fake`` folders, optionally under split and class folders."""

    name = "forensynths"
    description = "ForenSynths/CNNDetection layout: [split/][class/]0_real|1_fake/"

    def list_items(self) -> list[Item]:
        items = []
        root = self.root.resolve()
        for p in iter_image_files(root):
            parts = p.relative_to(root).parts[:-1]
            label_idx = [i for i, d in enumerate(parts) if d in _REAL_DIRS]
            if not label_idx:
                continue
            i = label_idx[-1]
            label = _REAL_DIRS[parts[i]]
            # the nearest split folder above the label folder, wherever the tree starts
            split = next((_SPLIT_ALIASES[d] for d in reversed(parts[:i]) if d in _SPLIT_ALIASES), None)
            family = next((d for d in reversed(parts[:i]) if d not in _SPLIT_ALIASES), None)
            items.append(self._item(p, label, split, {"family": family}))
        if not items:
            raise SourceError(f"{self.root}: no images under 0_real/ or 1_fake/ folders")
        return items


class GenImageSource(_FileSource):
    """``[generator/]train|val/nature|ai`` folders."""

    name = "genimage"
    description = "GenImage layout: [generator/]train|val/nature|ai/"

    def list_items(self) -> list[Item]:
        items = []
        root = self.root.resolve()
        for p in iter_image_files(root):
            parts = p.relative_to(root).parts[:-1]
            if len(parts) < 2 or parts[-1] not in _GENIMAGE_DIRS or parts[-2] not in _SPLIT_ALIASES:
                continue
            family = parts[-3] if len(parts) >= 3 else None
            items.append(
                self._item(p, _GENIMAGE_DIRS[parts[-1]], _SPLIT_ALIASES[parts[-2]], {"family": family})
            )
        if not items:
            raise SourceError(f"{self.root}: no images under train|val/nature|ai/ folders")
        return items


def detect_layout(root: Path) -> str:
    """``corpus``, ``forensynths``, ``genimage`` or ``folder``, from the folder names."""
    if (root / "manifest.jsonl").is_file():
        return "corpus"
    names: set[str] = set()
    pairs: set[tuple[str, str]] = set()
    for dirpath, dirnames, _ in os.walk(root):
        parent = os.path.basename(dirpath)
        for d in dirnames:
            names.add(d)
            pairs.add((parent, d))
        if len(names) > 10_000:
            break
    if names & set(_REAL_DIRS):
        return "forensynths"
    if any(p in _SPLIT_ALIASES and d in _GENIMAGE_DIRS for p, d in pairs):
        return "genimage"
    return "folder"


def source_for_path(root: Path, *, layout: str | None = None, **options) -> Source:
    """The right source for a path; ``layout`` overrides detection."""
    if not root.is_dir():
        raise SourceError(f"{root}: a data source path must be a folder")
    layout = layout or detect_layout(root)
    if layout == "corpus":
        from .corpus import CorpusSource

        return CorpusSource(root, **options)
    cls = {"forensynths": ForenSynthsSource, "genimage": GenImageSource, "folder": FolderSource}
    if layout not in cls:
        raise SourceError(f"unknown layout {layout!r}; choose corpus, forensynths, genimage or folder")
    if layout != "folder":
        if options.pop("label", None) is not None:
            raise SourceError(
                f"{root}: a {layout} layout takes its labels from its folder names; do not pass label"
            )
    return cls[layout](root, **options)


__all__ = [
    "FolderSource",
    "ForenSynthsSource",
    "GenImageSource",
    "detect_layout",
    "iter_image_files",
    "source_for_path",
    "SPLITS",
]
