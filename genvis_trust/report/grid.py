"""Image grids: the picture a person looks at instead of reading numbers."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from genvis_trust.atomic import atomic_write_bytes
from genvis_trust.io import encode_image


def image_grid(
    images: Sequence[np.ndarray], *, ncols: int | None = None, cell: int | None = None, pad: int = 2
) -> np.ndarray:
    """Tile H x W x 3 uint8 images into one image; ``cell`` resizes each (nearest) to that side.

    >>> image_grid([np.zeros((4, 4, 3), np.uint8)] * 3, ncols=2, pad=1).shape
    (11, 11, 3)
    """
    if not images:
        raise ValueError("image_grid needs at least one image")
    n = len(images)
    ncols = ncols or math.ceil(math.sqrt(n))
    nrows = math.ceil(n / ncols)
    if cell is None:
        h = max(im.shape[0] for im in images)
        w = max(im.shape[1] for im in images)
    else:
        h = w = cell
    out = np.full((nrows * (h + pad) + pad, ncols * (w + pad) + pad, 3), 255, np.uint8)
    for i, im in enumerate(images):
        if cell is not None and im.shape[:2] != (h, w):
            im = cv2.resize(im, (w, h), interpolation=cv2.INTER_NEAREST)
        r, c = divmod(i, ncols)
        y, x = pad + r * (h + pad), pad + c * (w + pad)
        out[y : y + im.shape[0], x : x + im.shape[1]] = im
    return out


def save_grid(path: str | Path, images: Sequence[np.ndarray], **kw) -> Path:
    """Write a PNG grid atomically; returns the path."""
    path = Path(path)
    atomic_write_bytes(path, encode_image(image_grid(images, **kw), "PNG"))
    return path
