"""The one sample type every source yields, the source registry, splits and patch sampling.

A *source* lists lightweight :class:`Item` references (key, split group, loader, label);
:meth:`Source.samples` turns the items of one split into decoded :class:`Sample` images,
optionally as deterministic random patches. Splits are made by *group* (the source
photograph), so no photograph contributes patches to two splits.
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from genvis_trust.registry import Registry

LABELS = ("real", "generated")
SPLITS = ("train", "val", "test")
DEFAULT_FRACTIONS = (0.7, 0.15, 0.15)


@dataclass
class Sample:
    """One labeled image: ``image`` is H x W x 3 uint8 RGB."""

    image: np.ndarray
    label: str | None  # "real" | "generated" | None when unknown
    source: str  # name of the source that produced it
    key: str  # unique within the source (path, index, plus patch position)
    group: str  # the source photograph; splits never share a group
    class_id: int | None = None
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class Item:
    """A not-yet-decoded image of a source."""

    key: str
    group: str
    load: Callable[[], np.ndarray]
    label: str | None
    class_id: int | None = None
    split: str | None = None  # fixed by the layout (e.g. GenImage train/val), else assigned
    meta: dict[str, Any] = field(default_factory=dict)


class SourceError(ValueError):
    """A source that cannot be built or read (bad name, bad layout, bad option)."""


def stable_int(*parts: object) -> int:
    """A 63-bit integer from the parts, stable across runs and Python versions."""
    # surrogateescape: a file name that is not UTF-8 still hashes (to its own bytes)
    h = hashlib.sha256("\x1f".join(map(str, parts)).encode("utf-8", "surrogateescape")).digest()
    return int.from_bytes(h[:8], "little") >> 1


def assign_splits(
    groups: list[str], fractions: tuple[float, float, float] = DEFAULT_FRACTIONS, seed: int = 0
) -> dict[str, str]:
    """Assign each group to train/val/test by a seeded shuffle cut at the fractions.

    Every split with a positive fraction gets at least one group when there are enough.
    """
    if len(fractions) != 3 or any(f < 0 for f in fractions) or sum(fractions) <= 0:
        raise SourceError(f"fractions must be three non-negative numbers, got {fractions}")
    uniq = sorted(set(groups))
    order = sorted(uniq, key=lambda g: stable_int(seed, "split", g))
    total = sum(fractions)
    n = len(order)
    # Largest-remainder rounding: counts sum to n and a zero fraction never gets a group
    # (plain rounding can overshoot n and leave train with a negative count).
    exact = [f / total * n for f in fractions]
    counts = [int(e) for e in exact]
    by_remainder = sorted(range(3), key=lambda i: (counts[i] - exact[i], i))
    for i in by_remainder[: n - sum(counts)]:
        counts[i] += 1
    wanted = [i for i, f in enumerate(fractions) if f > 0]
    if n >= len(wanted):
        for i in wanted:  # no requested split left empty
            if counts[i] == 0:
                # the largest split holds >= 2 groups here (pigeonhole), so it stays non-empty
                donor = max(range(3), key=lambda j: (counts[j], -j))
                counts[donor] -= 1
                counts[i] = 1
    out: dict[str, str] = {}
    pos = 0
    for name, c in zip(SPLITS, counts, strict=True):
        for g in order[pos : pos + c]:
            out[g] = name
        pos += c
    return out


class Source:
    """Base of every real-data source. Subclasses implement :meth:`list_items`.

    Options shared by every source:
      patch:     side of square patches to cut (None: whole images)
      n:         number of samples to yield (None: all images, or one patch per image)
      seed:      drives split assignment and patch positions
      split:     train / val / test / None (everything)
      fractions: train/val/test shares of the groups, when the layout fixes no split
      scales:    down-scaling factors a patch's image may be resized by before cropping
    """

    name = "source"
    description = ""
    num_classes: int | None = None

    def __init__(
        self,
        *,
        patch: int | None = None,
        n: int | None = None,
        seed: int = 0,
        split: str | None = None,
        fractions: tuple[float, float, float] = DEFAULT_FRACTIONS,
        scales: tuple[float, ...] = (1.0,),
    ):
        if split is not None and split not in SPLITS:
            raise SourceError(f"split must be one of {SPLITS} or None, got {split!r}")
        if patch is not None and patch < 1:
            raise SourceError(f"patch must be positive, got {patch}")
        if n is not None and n < 0:
            raise SourceError(f"n must be >= 0, got {n}")
        if not scales or any(not (0 < s <= 1) for s in scales):
            raise SourceError(f"scales must be in (0, 1], got {scales}")
        self.patch = patch
        self.n = n
        self.seed = seed
        self.split = split
        self.fractions = tuple(fractions)
        self.scales = tuple(scales)
        self.errors: list[dict] = []  # per-item load failures, recorded instead of crashing
        self._items: list[Item] | None = None

    # -- to implement
    def list_items(self) -> list[Item]:
        raise NotImplementedError

    # -- shared machinery
    def items(self) -> list[Item]:
        """All items with their split decided (cached)."""
        if self._items is None:
            items = self.list_items()
            free = [it.group for it in items if it.split is None]
            assigned = assign_splits(free, self.fractions, self.seed) if free else {}
            for it in items:
                if it.split is None:
                    it.split = assigned[it.group]
            self._items = items
        return self._items

    def split_items(self, split: str | None = None) -> list[Item]:
        split = self.split if split is None else split
        return [it for it in self.items() if split is None or it.split == split]

    def spec(self) -> dict[str, Any]:
        """What reproduces this stream: recorded in corpus and artifact cards."""
        return {
            "source": self.name,
            "patch": self.patch,
            "n": self.n,
            "seed": self.seed,
            "split": self.split,
            "fractions": list(self.fractions),
            "scales": list(self.scales),
        }

    def describe(self) -> dict[str, Any]:
        items = self.items()
        per_split = {s: sum(1 for it in items if it.split == s) for s in SPLITS}
        groups = {s: len({it.group for it in items if it.split == s}) for s in SPLITS}
        labels: dict[str, int] = {}
        for it in items:
            labels[str(it.label)] = labels.get(str(it.label), 0) + 1
        return {
            "name": self.name,
            "description": self.description,
            "images": len(items),
            "images_per_split": per_split,
            "groups_per_split": groups,
            "labels": labels,
            "num_classes": self.num_classes,
        }

    def __iter__(self) -> Iterator[Sample]:
        return self.samples()

    def __len__(self) -> int:
        items = self.split_items()
        if self.n is not None:
            return self.n if self.patch is not None else min(self.n, len(items))
        return len(items)

    def samples(self) -> Iterator[Sample]:
        """Yield decoded samples of the configured split; deterministic under ``seed``."""
        items = self.split_items()
        if not items:
            return
        if self.patch is None:
            order = items
            if self.n is not None and self.n < len(items):
                order = sorted(items, key=lambda it: stable_int(self.seed, "pick", it.key))
                order = order[: self.n]
            for it in order:
                img = self._load(it)
                if img is not None:
                    yield self._sample(it, img, it.key, {})
            return
        n = len(items) if self.n is None else self.n
        quotas = [n // len(items) + (1 if i < n % len(items) else 0) for i in range(len(items))]
        # spread the remainder over items in a seeded order, not always the first ones
        order = sorted(range(len(items)), key=lambda i: stable_int(self.seed, "quota", items[i].key))
        for rank, i in enumerate(order):
            q = quotas[rank]
            if q == 0:
                continue
            it = items[i]
            img = self._load(it)
            if img is None:
                continue
            yield from self._patches(it, img, q)

    def _load(self, it: Item) -> np.ndarray | None:
        from genvis_trust.io import ImageLoadError

        try:
            img = it.load()
        except ImageLoadError as e:
            self.errors.append({"key": it.key, **e.to_dict()})
            print(f"warning: skipped {e}", file=sys.stderr)
            return None
        return to_rgb_uint8(img)

    def _sample(self, it: Item, img: np.ndarray, key: str, meta: dict) -> Sample:
        return Sample(
            image=img,
            label=it.label,
            source=self.name,
            key=key,
            group=it.group,
            class_id=it.class_id,
            meta={**it.meta, **meta, "split": it.split},
        )

    def _patches(self, it: Item, img: np.ndarray, count: int) -> Iterator[Sample]:
        p = self.patch
        assert p is not None
        rng = np.random.default_rng(stable_int(self.seed, "patch", it.key))
        scaled: dict[float, np.ndarray] = {}
        for j in range(count):
            s = float(self.scales[rng.integers(len(self.scales))])
            if s not in scaled:
                scaled[s] = _scale_for_patch(img, s, p)
            im = scaled[s]
            h, w = im.shape[:2]
            y = int(rng.integers(0, h - p + 1))
            x = int(rng.integers(0, w - p + 1))
            patch = np.ascontiguousarray(im[y : y + p, x : x + p])
            meta = {"patch": [x, y, p], "scale": s}
            yield self._sample(it, patch, f"{it.key}#{j}@{s:g}:{x},{y}", meta)


def _scale_for_patch(img: np.ndarray, scale: float, patch: int) -> np.ndarray:
    h, w = img.shape[:2]
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    short = min(nh, nw)
    if short < patch:  # never crop outside the image: enlarge just enough
        f = patch / short
        nh, nw = max(patch, round(nh * f)), max(patch, round(nw * f))
    if (nh, nw) == (h, w):
        return img
    interp = cv2.INTER_AREA if nh < h else cv2.INTER_CUBIC
    return cv2.resize(img, (nw, nh), interpolation=interp)


def to_rgb_uint8(img: Any) -> np.ndarray:
    """Bring PIL images, tensors (C,H,W float in [0,1] or uint8) and arrays to H x W x 3 uint8."""
    try:
        from PIL import Image

        if isinstance(img, Image.Image):
            img = np.asarray(img.convert("RGB"))
    except ImportError:  # pragma: no cover
        pass
    if hasattr(img, "detach"):  # torch tensor
        t = img.detach().cpu()
        if t.ndim == 3 and t.shape[0] in (1, 3) and t.shape[-1] not in (1, 3):
            t = t.permute(1, 2, 0)
        img = t.numpy()
    a = np.asarray(img)
    if a.dtype != np.uint8:
        if np.issubdtype(a.dtype, np.floating):
            a = np.clip(np.round(a * 255.0 if a.max(initial=0) <= 1.0 else a), 0, 255)
        a = np.clip(a, 0, 255).astype(np.uint8)
    if a.ndim == 2:
        a = a[..., None]
    if a.ndim != 3:
        raise SourceError(f"expected an image with 2 or 3 dimensions, got shape {a.shape}")
    if a.shape[2] == 1:
        a = np.repeat(a, 3, axis=2)
    elif a.shape[2] == 4:
        a = a[..., :3]
    elif a.shape[2] != 3:
        raise SourceError(f"expected 1, 3 or 4 channels, got shape {a.shape}")
    return np.ascontiguousarray(a)


# --------------------------------------------------------------------------- registry

def _create(cls: Callable[..., Source], **options: Any) -> Source:
    try:
        return cls(**options)
    except TypeError as e:  # an option this source does not take, e.g. label=
        raise SourceError(f"{cls.name}: {e}") from None


SOURCES: Registry[Callable[..., Source]] = Registry("source", error=SourceError, factory=_create)


def register_source(name: str, description: str):
    """Class decorator: make a source available by name to ``get_source`` and the CLI."""
    return SOURCES.decorator(name, name=name, description=description)


def list_sources() -> dict[str, str]:
    """Registered source names and one-line descriptions."""
    return {k: c.description for k, c in SOURCES.list().items()}
