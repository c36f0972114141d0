"""Built-in real images that ship inside installed packages: nothing is downloaded.

- ``builtin-photos``: the colour natural photographs shipped by scikit-image,
  scikit-learn and matplotlib (10 photographs, 300 to 2000+ pixels a side);
- ``builtin-faces``: scikit-image's 200 LFW patches (100 faces, 100 non-faces, 25x25 grey);
- ``builtin-digits``: scikit-learn's 1,797 handwritten digits (8x8, 17 grey levels),
  upscaled to ``size`` (32 by default), class labels 0-9.
"""

from __future__ import annotations

import os
from functools import partial

import cv2
import numpy as np

from genvis_trust.io import load_image

from .base import Item, Source, SourceError, register_source


def _skimage_path(name: str) -> str:
    import skimage

    return os.path.join(os.path.dirname(skimage.__file__), "data", name)


def _sklearn_path(name: str) -> str:
    import sklearn.datasets

    return os.path.join(os.path.dirname(sklearn.datasets.__file__), "images", name)


def _mpl_path(name: str) -> str:
    import matplotlib

    return os.path.join(matplotlib.get_data_path(), "sample_data", name)


# (key, group, path resolver). Motorcycle left/right are one stereo scene: one group.
# Grey-only images (camera, moon, coins, textures) are left out so "grey" never means "real".
_PHOTOS = [
    ("skimage/astronaut", "astronaut", partial(_skimage_path, "astronaut.png")),
    ("skimage/chelsea", "chelsea", partial(_skimage_path, "chelsea.png")),
    ("skimage/coffee", "coffee", partial(_skimage_path, "coffee.png")),
    ("skimage/hubble_deep_field", "hubble", partial(_skimage_path, "hubble_deep_field.jpg")),
    ("skimage/motorcycle_left", "motorcycle", partial(_skimage_path, "motorcycle_left.png")),
    ("skimage/motorcycle_right", "motorcycle", partial(_skimage_path, "motorcycle_right.png")),
    ("skimage/rocket", "rocket", partial(_skimage_path, "rocket.jpg")),
    ("skimage/retina", "retina", partial(_skimage_path, "retina.jpg")),
    ("sklearn/china", "china", partial(_sklearn_path, "china.jpg")),
    ("sklearn/flower", "flower", partial(_sklearn_path, "flower.jpg")),
    ("matplotlib/grace_hopper", "grace_hopper", partial(_mpl_path, "grace_hopper.jpg")),
]


def _load_path(resolve) -> np.ndarray:
    return load_image(resolve()).array


@register_source(
    "builtin-photos",
    "colour photographs shipped with scikit-image, scikit-learn and matplotlib (patches)",
)
class BuiltinPhotos(Source):
    """Natural photographs. Best used with ``patch=`` (e.g. 32) and ``n=``.

    >>> src = BuiltinPhotos(patch=32, n=4, seed=0, split="train")
    >>> [s.image.shape for s in src]
    [(32, 32, 3), (32, 32, 3), (32, 32, 3), (32, 32, 3)]
    """

    def __init__(self, **options):
        options.setdefault("scales", (1.0, 0.5, 0.25))
        # 10 photographs: 6/2/2 keeps two unseen photographs for testing (0.7/0.15/0.15 gives 7/2/1)
        options.setdefault("fractions", (0.6, 0.2, 0.2))
        super().__init__(**options)

    def list_items(self) -> list[Item]:
        items = []
        for key, group, resolve in _PHOTOS:
            if not os.path.exists(resolve()):
                raise SourceError(f"{key}: expected file {resolve()} is missing from its package")
            # the codec the photograph was stored with: detector training compares it across classes
            encoding = "jpeg" if resolve().lower().endswith((".jpg", ".jpeg")) else "png"
            items.append(
                Item(key=key, group=group, load=partial(_load_path, resolve), label="real", meta={"encoding": encoding})
            )
        return items


@register_source("builtin-faces", "scikit-image's LFW subset: 100 face and 100 non-face 25x25 patches")
class BuiltinFaces(Source):
    """``class_id`` is 1 for a face, 0 for a non-face. Each patch is its own group."""

    num_classes = 2

    def __init__(self, size: int = 32, **options):
        super().__init__(**options)
        self.size = size

    def spec(self):
        return {**super().spec(), "size": self.size}

    def list_items(self) -> list[Item]:
        arr = np.load(_skimage_path("lfw_subset.npy"), allow_pickle=False)
        items = []
        for i, a in enumerate(arr):
            cls = 1 if i < 100 else 0
            items.append(
                Item(
                    key=f"lfw_subset/{i:03d}",
                    group=f"lfw_subset/{i:03d}",
                    load=partial(_grey_to_rgb, a, self.size),
                    label="real",
                    class_id=cls,
                )
            )
        return items


@register_source("builtin-digits", "scikit-learn's 1,797 handwritten digits, upscaled, classes 0-9")
class BuiltinDigits(Source):
    """Digits as white strokes on black, upscaled bilinearly to ``size``; ``class_id`` = digit."""

    num_classes = 10

    def __init__(self, size: int = 32, **options):
        super().__init__(**options)
        self.size = size

    def spec(self):
        return {**super().spec(), "size": self.size}

    def list_items(self) -> list[Item]:
        from sklearn.datasets import load_digits

        d = load_digits()
        items = []
        for i, (img, target) in enumerate(zip(d.images, d.target, strict=True)):
            items.append(
                Item(
                    key=f"digits/{i:04d}",
                    group=f"digits/{i:04d}",
                    load=partial(_grey_to_rgb, img / 16.0, self.size),
                    label="real",
                    class_id=int(target),
                )
            )
        return items


def _grey_to_rgb(a: np.ndarray, size: int | None) -> np.ndarray:
    a = np.asarray(a, dtype=np.float32)
    if a.max() > 1.0:
        a = a / 255.0
    if size is not None and a.shape != (size, size):
        a = cv2.resize(a, (size, size), interpolation=cv2.INTER_LINEAR)
    g = np.clip(np.round(a * 255.0), 0, 255).astype(np.uint8)
    return np.repeat(g[..., None], 3, axis=2)
