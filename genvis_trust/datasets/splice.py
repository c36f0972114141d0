"""Spliced corpora: a region of each real photograph replaced by its autoencoder reconstruction,
with the mask. For developing and testing localisation until an inpainting model writes such
corpora: the pasted pixels are a latent decoder's output of the very same content, aligned to
the pixel, so the only thing that marks the region is the decoder's trace (the hardest case
for a detector, and the one the bundled default was trained to see).

Each record: ``label: generated``, family ``<autoencoder>-splice``, the photograph's group and
split (``meta.split``), ``meta.spliced_from`` (source and key), ``meta.region`` (shape and box)
and the mask (:meth:`CorpusWriter.add`'s ``mask=``: True where pixels were replaced).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable

import numpy as np

from .base import Sample, stable_int
from .corpus import CorpusWriter


def random_region(h: int, w: int, rng: np.random.Generator, share: tuple[float, float] = (0.03, 0.15)) -> tuple[np.ndarray, dict]:
    """An ``h x w`` bool mask holding one ellipse or rectangle covering a ``share`` of the
    image, placed uniformly; and its description (shape, box ``[x, y, w, h]``)."""
    area = rng.uniform(*share) * h * w
    aspect = rng.uniform(0.6, 1.6)
    rw = int(min(w, max(8, round(np.sqrt(area * aspect)))))
    rh = int(min(h, max(8, round(area / max(rw, 1)))))
    x = int(rng.integers(0, w - rw + 1))
    y = int(rng.integers(0, h - rh + 1))
    mask = np.zeros((h, w), bool)
    shape = "ellipse" if rng.random() < 0.5 else "rectangle"
    if shape == "rectangle":
        mask[y : y + rh, x : x + rw] = True
    else:
        yy, xx = np.ogrid[:rh, :rw]
        cy, cx = (rh - 1) / 2, (rw - 1) / 2
        mask[y : y + rh, x : x + rw] = ((yy - cy) / (rh / 2)) ** 2 + ((xx - cx) / (rw / 2)) ** 2 <= 1.0
    return mask, {"shape": shape, "box": [x, y, rw, rh]}


def splice(image: np.ndarray, mask: np.ndarray, reconstruct: Callable[[np.ndarray], np.ndarray], context: int = 32) -> np.ndarray:
    """``image`` with the pixels under ``mask`` replaced by ``reconstruct`` of a window around
    them (the mask's box plus ``context`` pixels, on the 8-pixel grid, so the autoencoder sees
    the surroundings and stays aligned)."""
    ys, xs = np.nonzero(mask)
    h, w = mask.shape
    y0, x0 = max(0, (ys.min() - context) // 8 * 8), max(0, (xs.min() - context) // 8 * 8)
    y1, x1 = min(h, ys.max() + 1 + context), min(w, xs.max() + 1 + context)
    window = np.ascontiguousarray(image[y0:y1, x0:x1])
    out = image.copy()
    rec = reconstruct(window)
    m = mask[y0:y1, x0:x1]
    out[y0:y1, x0:x1][m] = rec[m]
    return out


def splice_corpus(
    samples: Iterable[Sample],
    out: str | os.PathLike,
    *,
    autoencoder: str = "taef2",
    device: str = "auto",
    seed: int = 0,
    share: tuple[float, float] = (0.03, 0.15),
    max_side: int | None = 768,
    overwrite: bool = False,
    command: str | None = None,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Write one spliced image per sample to the corpus ``out`` (PNG); returns the count.
    ``max_side``: a centre crop of at most this side is used (as ``datasets reconstruct``
    does), so evaluation stays affordable on a CPU. The region of each photograph is drawn
    from ``seed`` and its key, so reruns give the same corpus."""
    from genvis_trust.generators.reconstruct import centre_crop
    from genvis_trust.generators.tiny_autoencoder import load_autoencoder

    ae = load_autoencoder(autoencoder, device=device)
    name = os.path.basename(str(autoencoder))
    card = {
        "about": f"spliced: one region of each real photograph replaced by its {name} reconstruction; masks mark it",
        "autoencoder": {"name": name, "weights_sha256": ae.sha256},
        "region_share": list(share),
        "seed": seed,
        "command": command,
    }
    n = 0
    with CorpusWriter(out, card=card, overwrite=overwrite, image_format="PNG") as w:
        for s in samples:
            img = s.image
            crop = None
            if max_side is not None and max(img.shape[:2]) > max_side:
                img, crop = centre_crop(img, max_side)
            rng = np.random.default_rng(stable_int(seed, "splice", s.source, s.key))
            mask, region = random_region(*img.shape[:2], rng, share)
            w.add(
                splice(img, mask, ae.reconstruct),
                label="generated",
                source=f"{name}-splice",
                key=s.key,
                group=s.group,
                family=f"{name}-splice",
                checkpoint_sha256=ae.sha256,
                meta={"split": s.meta.get("split"), "spliced_from": {"source": s.source, "key": s.key, "crop": crop},
                      "region": region, "origin": s.meta.get("origin")},
                mask=mask,
            )
            n += 1
            if progress:
                progress(n)
    return n


__all__ = ["random_region", "splice", "splice_corpus"]
