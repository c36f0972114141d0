"""One adapter for any map-style dataset yielding ``(image, target)`` pairs.

Works with torchvision's dataset classes (CIFAR10, CelebA, ImageFolder, FakeData, ...)
that a user downloaded elsewhere: images may be PIL images, tensors or arrays.

>>> from torchvision.datasets import FakeData
>>> src = MapDatasetSource(FakeData(size=5, image_size=(3, 16, 16)), label="real", split=None)
>>> s = next(iter(src)); s.image.shape, s.image.dtype.name
((16, 16, 3), 'uint8')
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .base import Item, Source, SourceError, to_rgb_uint8


class _IndexLoader:
    """Decode item ``index``; when the class was unknown at listing (no ``targets``
    attribute), take it from the target this decode returns anyway."""

    def __init__(self, source: MapDatasetSource, index: int):
        self.source, self.index = source, index
        self.item: Item | None = None

    def __call__(self) -> np.ndarray:
        image, target = self.source.dataset[self.index]
        if self.item is not None and self.item.class_id is None:
            self.item.class_id = self.source._class(target)
        return to_rgb_uint8(image)


class MapDatasetSource(Source):
    """Wrap ``dataset`` (``len()`` and ``[i] -> (image, target)``).

    label:       "real" or "generated" for every image, or ``label_of(target)`` decides;
    class_of:    maps a target to an integer class (default: the target when it is an int);
    group_of:    maps an index to its split group (default: the index itself).
    """

    name = "dataset"
    description = "any map-style (image, target) dataset, e.g. torchvision's"

    def __init__(
        self,
        dataset,
        *,
        label: str | None = "real",
        label_of: Callable[[Any], str] | None = None,
        class_of: Callable[[Any], int | None] | None = None,
        group_of: Callable[[int], str] | None = None,
        name: str | None = None,
        **options,
    ):
        super().__init__(**options)
        if not hasattr(dataset, "__len__") or not hasattr(dataset, "__getitem__"):
            raise SourceError("dataset must support len() and indexing (a map-style dataset)")
        self.dataset = dataset
        self.label = label
        self.label_of = label_of
        self.class_of = class_of
        self.group_of = group_of
        self.name = name or f"dataset:{type(dataset).__name__}"
        classes = getattr(dataset, "classes", None)
        self.num_classes = len(classes) if classes is not None else None
        if self.num_classes is None and isinstance(getattr(dataset, "num_classes", None), int):
            self.num_classes = dataset.num_classes  # e.g. FakeData

    def _targets(self) -> list[Any] | None:
        for attr in ("targets", "labels"):
            t = getattr(self.dataset, attr, None)
            if t is not None and len(t) == len(self.dataset):
                return list(t)
        return None

    def list_items(self) -> list[Item]:
        targets = self._targets()
        items = []
        class_known = targets is not None or self.label_of is not None or self.class_of is not None
        for i in range(len(self.dataset)):
            if targets is None and (self.label_of or self.class_of):
                target = self.dataset[i][1]  # costs a decode: only without a targets attribute
            else:
                target = targets[i] if targets is not None else None
            label = self.label_of(target) if self.label_of else self.label
            if label not in (None, "real", "generated"):
                raise SourceError(f"item {i}: label must be 'real' or 'generated', got {label!r}")
            loader = _IndexLoader(self, i)
            item = Item(
                key=f"{i}",
                group=self.group_of(i) if self.group_of else f"{i}",
                load=loader,
                label=label,
                class_id=self._class(target) if class_known else None,
            )
            if not class_known:
                loader.item = item
            items.append(item)
        return items

    def _class(self, target) -> int | None:
        if self.class_of is not None:
            return self.class_of(target)
        if isinstance(target, (int, np.integer)):
            return int(target)
        if hasattr(target, "item") and getattr(target, "ndim", 1) == 0:
            return int(target.item())
        return None
