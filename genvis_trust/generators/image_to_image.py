"""What image-to-image families share: inputs drawn from real photographs, masks, one base class.

An image-to-image model (autoencoder reconstruction, super-resolution, inpainting) turns a
real photograph into a generated one. So that ``genvis-trust generate MODEL --n N --seed S``
works with no other argument, each image draws its own input from its seed:

- the photograph: one whole image of the ``input`` source (default ``builtin-photos``, the
  photographs shipped inside installed packages), picked by the seed;
- a ``size`` x ``size`` crop of it at native resolution, at a position picked by the seed
  (photos whose short side is below ``size`` are enlarged just enough, and the record says so);
- for inpainting, a mask drawn from the seed (:func:`random_mask`).

Image ``i`` therefore still depends only on ``seeds[i]``, and a manifest record (its seed and
sampler settings) regenerates it alone. The record's ``meta.input`` names the photograph
(source, key, group, crop box) the output came from.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np
import torch

from .base import Generator, GeneratorError

DEFAULT_INPUT = "builtin-photos"


@functools.lru_cache(maxsize=4)
def _photos(source: str) -> tuple[tuple[str, str | None, np.ndarray], ...]:
    """Every whole image of ``source``, as ``(key, group, HxWx3 uint8)``, sorted by key.

    ``NAME:SPLIT`` (e.g. ``photos-native:train``) keeps one split only, so a training corpus can
    be drawn from photographs that a detector's evaluation never sees; otherwise all splits.
    """
    from genvis_trust.datasets import get_source
    from genvis_trust.datasets.base import SPLITS

    name, _, split = source.rpartition(":")
    if name and split in SPLITS:
        src = get_source(name, split=split)
    else:
        src = get_source(source)
    out = [(s.key, s.group, s.image) for s in src]
    if not out:
        raise GeneratorError(f"input source {source!r} has no images")
    return tuple(sorted(out, key=lambda t: t[0]))


def draw_input(source: str, seed: int, size: int) -> tuple[np.ndarray, dict[str, Any]]:
    """The ``size`` x ``size`` native-resolution crop image ``seed`` starts from, and where it came from."""
    photos = _photos(source)
    rng = np.random.default_rng(seed)
    key, group, img = photos[int(rng.integers(len(photos)))]
    h, w = img.shape[:2]
    info: dict[str, Any] = {"source": source, "key": key, "group": group, "photo_size": [w, h]}
    if min(h, w) < size:
        f = size / min(h, w)
        img = cv2.resize(img, (max(size, round(w * f)), max(size, round(h * f))), interpolation=cv2.INTER_CUBIC)
        info["enlarged"] = round(f, 4)
        h, w = img.shape[:2]
    y, x = int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1))
    info["box"] = [x, y, size, size]  # in the (possibly enlarged) photo
    return np.ascontiguousarray(img[y : y + size, x : x + size]), info


def random_mask(rng: np.random.Generator, h: int, w: int, *, coverage: tuple[float, float] = (0.05, 0.3)) -> np.ndarray:
    """A bool H x W mask (True = to regenerate): one object-like blob, a rectangle, or brush strokes,
    covering a share of the image drawn from ``coverage``."""
    target = rng.uniform(*coverage) * h * w
    m = np.zeros((h, w), np.uint8)
    kind = int(rng.integers(3))
    cy, cx = rng.uniform(0.25, 0.75) * h, rng.uniform(0.25, 0.75) * w
    if kind == 0:  # ellipse (an object)
        ratio = rng.uniform(0.5, 2.0)
        ry = np.sqrt(target / np.pi * ratio)
        rx = target / (np.pi * ry)
        cv2.ellipse(m, (int(cx), int(cy)), (max(2, int(rx)), max(2, int(ry))), float(rng.uniform(0, 180)), 0, 360, 1, -1)
    elif kind == 1:  # rectangle
        ratio = rng.uniform(0.5, 2.0)
        hh = min(h - 2, int(np.sqrt(target * ratio)))
        ww = min(w - 2, int(target / max(hh, 1)))
        y0 = int(np.clip(cy - hh / 2, 0, h - hh))
        x0 = int(np.clip(cx - ww / 2, 0, w - ww))
        m[y0 : y0 + hh, x0 : x0 + ww] = 1
    else:  # brush strokes
        thick = max(3, int(min(h, w) * rng.uniform(0.04, 0.1)))
        x, y = cx, cy
        for _ in range(200):
            if m.sum() >= target:
                break
            a = rng.uniform(0, 2 * np.pi)
            length = rng.uniform(0.05, 0.25) * min(h, w)
            nx = float(np.clip(x + length * np.cos(a), 0, w - 1))
            ny = float(np.clip(y + length * np.sin(a), 0, h - 1))
            cv2.line(m, (int(x), int(y)), (int(nx), int(ny)), 1, thick)
            x, y = nx, ny
    if not m.any():  # degenerate draw on a tiny image: a centre square
        m[h // 4 : 3 * h // 4, w // 4 : 3 * w // 4] = 1
    return m.astype(bool)


class ImageToImage(Generator):
    """Base of image-to-image families: ``transform`` maps real pixels to generated ones.

    Subclasses implement :meth:`transform`; those that regenerate a region set ``uses_mask``.
    ``sample`` draws each image's input (and mask) from its seed, so every generator
    entry point (corpora, ``evaluate``, ``regenerate``) works unchanged.
    """

    image_to_image = True
    uses_mask = False
    output_scale = 1
    size_multiple = 1  # input sides must be a multiple of this (8 for an 8x autoencoder)
    sampler_defaults = {"input": DEFAULT_INPUT, "size": 256}

    def transform(self, x: torch.Tensor, masks: torch.Tensor | None = None) -> torch.Tensor:
        """uint8 ``(B, 3, H, W)`` (+ bool ``(B, 1, H, W)`` masks) -> uint8 ``(B, H', W', 3)``."""
        raise NotImplementedError

    def draw(self, seeds: Sequence[int], *, input: str = DEFAULT_INPUT, size: int = 256):
        """Inputs (uint8 ``(B, 3, size, size)``), masks (or None) and per-image input records."""
        if size < 4 or size % self.size_multiple:
            raise GeneratorError(f"{self.family}: size must be at least 4 pixels and a multiple of "
                                 f"{self.size_multiple}, got {size}")
        crops, infos, masks = [], [], []
        for s in seeds:
            crop, info = draw_input(input, int(s), size)
            crops.append(crop)
            infos.append(info)
            if self.uses_mask:
                masks.append(random_mask(np.random.default_rng([int(s), 1]), size, size))
        x = torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).contiguous()
        m = torch.from_numpy(np.stack(masks))[:, None] if self.uses_mask else None
        return x, m, infos

    @torch.no_grad()
    def sample_with_info(self, seeds, class_ids=None, *, input: str = DEFAULT_INPUT, size: int = 256):
        """Like :meth:`sample`, plus per image ``{"input": ..., "mask": HxW bool or None}``."""
        self._check_classes(len(seeds), class_ids)
        x, m, infos = self.draw(seeds, input=input, size=size)
        dev = self.device
        # one image per call: a convolution's float rounding can depend on the batch shape, and
        # image i must come out bit-identical when regenerated alone from its record
        y = torch.cat([self.transform(x[i : i + 1].to(dev), None if m is None else m[i : i + 1].to(dev)).cpu()
                       for i in range(len(seeds))])
        extra = [{"input": info, "mask": None if m is None else m[i, 0].numpy()} for i, info in enumerate(infos)]
        return y, extra

    def sample(self, seeds, class_ids=None, **sampler):
        return self.sample_with_info(seeds, class_ids, **sampler)[0]


def composite(source_uint8: torch.Tensor, generated_uint8: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Generated pixels inside ``mask``, the source's exact pixels outside (all ``(B, C, H, W)``)."""
    return torch.where(mask.bool().expand_as(source_uint8), generated_uint8, source_uint8)
