"""Images on disk: a plain folder, the ForenSynths and GenImage benchmark layouts.

- plain folder: every image below it; one label for all (``label=``), or none;
- ForenSynths / CNNDetection: ``[train|val|test/][class/]0_real|1_fake/*``;
- GenImage: ``[generator/]train|val/nature|ai/*``.

Layouts that name a split (train/val/test folders) keep it; otherwise splits are
assigned by group, where the group is the image's relative path.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from genvis_trust.io import IMAGE_EXTENSIONS, load_image

from .base import LABELS, SOURCES, SPLITS, Item, Source, SourceError

_REAL_DIRS = {"0_real": "real", "1_fake": "generated"}
_GENIMAGE_DIRS = {"nature": "real", "ai": "generated"}
_SPLIT_ALIASES = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}


@dataclass(frozen=True)
class Entry:
    """One thing found below a walked folder, named by its own path (never its target's).

    ``error`` (``code``, ``message``) is set when the entry must not be opened: a link out
    of the tree, a link loop, a dangling link, a link to a folder, a FIFO, socket or
    device, a folder that cannot be listed. ``link`` (``target``, ``inside``) is set for a
    symbolic link; a link to a regular file inside the tree is read through the link.
    """

    path: Path
    rel: str
    link: dict | None = None
    error: dict | None = None


def _problem(path: Path, rel: str, code: str, message: str, link: dict | None = None) -> Entry:
    return Entry(path, rel, link, {"code": code, "message": message, "path": os.fsdecode(path)})


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device")):
        if test(mode):
            return name
    return "not a regular file"


def _link_entry(path: Path, rel: str, root_real: str) -> Entry:
    try:
        written = os.readlink(path)
        real = os.path.realpath(path, strict=True)
    except FileNotFoundError:
        return _problem(path, rel, "not_found", f"a symbolic link to {written}, which does not exist",
                        {"target": written, "inside": None})
    except OSError as e:  # ELOOP: a link that (eventually) points at itself
        return _problem(path, rel, "unreadable", f"a symbolic link that cannot be resolved ({e.strerror})",
                        {"target": os.readlink(path) if os.path.islink(path) else None, "inside": None})
    inside = real == root_real or real.startswith(root_real.rstrip(os.sep) + os.sep)
    link = {"target": Path(os.path.relpath(real, root_real)).as_posix() if inside else real, "inside": inside}
    if not inside:
        return _problem(path, rel, "unreadable", f"a symbolic link to {real}, outside the walked folder; not followed", link)
    mode = os.stat(real).st_mode
    if stat.S_ISDIR(mode):
        # its files are walked under their own paths; following it too would record them
        # twice (or forever, for a link to an ancestor)
        where = "the walked folder itself" if link["target"] == "." else f"the folder {link['target']}"
        return _problem(path, rel, "unreadable", f"a symbolic link to {where} in the same tree; "
                        "not followed, its files are recorded under their own paths", link)
    if not stat.S_ISREG(mode):
        return _problem(path, rel, "unreadable", f"a symbolic link to {_kind(mode)}; not opened", link)
    return Entry(path, rel, link)


def walk_entries(root: str | os.PathLike, *, exclude: str | os.PathLike | None = None,
                 prune: Callable[[Path, str], bool] | None = None) -> Iterator[Entry]:
    """Every entry below ``root``, lazily, depth first, sorted by name; hidden ones skipped.

    Never follows a folder link, so loops cannot trap it; each entry is yielded once under
    its own path, problems included (see :class:`Entry`), so a caller can record them.
    ``prune(path, rel)``: a sub-folder for which it returns True is not walked.
    """
    root = Path(root)
    root_real = os.path.realpath(root)
    ex = None
    if exclude is not None:
        try:
            st = os.stat(exclude)
            ex = (st.st_dev, st.st_ino)
        except OSError:
            pass
    stack: list[tuple[Path, str]] = [(root, "")]
    while stack:
        folder, rel = stack.pop()
        try:
            with os.scandir(folder) as it:
                found = sorted(it, key=lambda e: e.name)
        except OSError as e:
            yield _problem(folder, rel or ".", "unreadable", f"folder could not be listed ({e.strerror})")
            continue
        subfolders = []
        for e in found:
            if e.name.startswith("."):
                continue
            p, r = Path(e.path), f"{rel}/{e.name}" if rel else e.name
            try:
                if e.is_symlink():
                    yield _link_entry(p, r, root_real)
                elif e.is_dir(follow_symlinks=False):
                    st = e.stat(follow_symlinks=False)
                    if (st.st_dev, st.st_ino) != ex and not (prune is not None and prune(p, r)):
                        subfolders.append((p, r))
                elif e.is_file(follow_symlinks=False):
                    yield Entry(p, r)
                else:
                    yield _problem(p, r, "unreadable", f"{_kind(e.stat(follow_symlinks=False).st_mode)}; not opened")
            except OSError as exc:  # vanished or unreadable between listing and looking
                yield _problem(p, r, "unreadable", f"could not be examined ({exc.strerror})")
        stack.extend(reversed(subfolders))


def display_name(name: str) -> str:
    """``name`` as text any terminal or UTF-8 file takes: bytes that are not UTF-8 (kept by
    Python as surrogate escapes, so the file can still be opened) show as U+FFFD."""
    try:
        return name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    except UnicodeEncodeError:
        return name.encode("utf-8", "replace").decode("utf-8")


def iter_image_files(root: Path, *, all_files: bool = False) -> list[Path]:
    """Image files below ``root`` (by extension unless ``all_files``), sorted, no hidden ones.

    Each is named by its own path below ``root`` (a link inside the tree keeps its name);
    links out of the tree, loops, folder links and special files are left out.
    """
    return [
        e.path for e in walk_entries(root)
        if e.error is None and (all_files or e.path.suffix.lower() in IMAGE_EXTENSIONS)
    ]


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
        # never resolved: an in-root symlink keeps its own key instead of duplicating its target's
        rel = path.relative_to(self.root).as_posix()
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
        root = self.root
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
        root = self.root
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


def get_source(spec: str, **options: Any) -> Source:
    """A source by registered name, or by path: a corpus (``manifest.jsonl``), a
    ForenSynths (``0_real``/``1_fake``) or GenImage (``train|val/nature|ai``) tree, or a
    plain folder of images.
    """
    if spec in SOURCES:
        return SOURCES.create(spec, **options)
    if Path(spec).exists():
        return source_for_path(Path(spec), **options)
    known = ", ".join(SOURCES.list())
    raise SourceError(f"unknown source {spec!r}: not a registered name ({known}) nor an existing path")


__all__ = [
    "Entry",
    "display_name",
    "walk_entries",
    "FolderSource",
    "ForenSynthsSource",
    "GenImageSource",
    "detect_layout",
    "get_source",
    "iter_image_files",
    "source_for_path",
    "SPLITS",
]
