"""Perceptual hash (pHash, DCT-based, 64 bits) used to find a stamped image again.

The classic recipe (Zauner 2010, as in the ``imagehash`` package): grey, resize to 32x32
with area averaging, 2-D DCT, keep the 8x8 lowest frequencies, set a bit where a
coefficient exceeds their median (DC term excluded from the median). Robust to
re-encoding and resizing; not to crops or rotations.

>>> import numpy as np
>>> img = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
>>> h = phash(img); len(h), hamming(h, phash(img))
(16, 0)
"""

from __future__ import annotations

import cv2
import numpy as np


def phash(rgb: np.ndarray) -> str:
    """64-bit pHash of an RGB uint8 image, as 16 hex digits."""
    # imported here: the store (and so every scan) imports this module, but only a scan
    # with a store computes a hash, and scipy.fft costs ~0.2 s to import
    from scipy.fft import dctn

    grey = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY).astype(np.float64)
    small = cv2.resize(grey, (32, 32), interpolation=cv2.INTER_AREA)
    low = dctn(small, type=2, norm="ortho")[:8, :8]
    med = np.median(low.ravel()[1:])
    bits = (low > med).ravel()
    return f"{int(''.join('1' if b else '0' for b in bits), 2):016x}"


def hamming(a: str, b: str) -> int:
    """Bits that differ between two hex hashes."""
    return bin(int(a, 16) ^ int(b, 16)).count("1")
