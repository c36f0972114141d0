"""Sampling to corpora: streaming, batched, resumable, every image reproducible alone.

Image ``i`` of a run with base seed ``S`` is drawn from ``image_seed(S, i)`` (recorded in
its manifest record), so ``regenerate(model, record)`` reproduces it on the same device
without the rest of the batch.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from genvis_trust.datasets import CorpusWriter

from .artifact import LoadedGenerator, load_generator
from .base import GeneratorError, image_seed


def sampler_settings(model, **sampler: Any) -> dict[str, Any]:
    """The family's defaults overridden by the given (non-None) settings; unknown keys rejected."""
    defaults = dict(model.sampler_defaults)
    unknown = sorted(k for k, v in sampler.items() if v is not None and k not in defaults)
    if unknown:
        raise GeneratorError(f"{model.family}: unknown sampler setting(s) {unknown}; accepted: {sorted(defaults)}")
    settings = {**defaults, **{k: v for k, v in sampler.items() if v is not None}}
    from .diffusion import DDPM

    if isinstance(model, DDPM) and settings.get("sampler") == "ancestral":
        settings["steps"] = model.timesteps
    if isinstance(model, DDPM) and not model.num_classes:
        settings.pop("guidance", None)
    return settings


def class_for_index(model, i: int, class_id: int | None) -> int | None:
    if not model.num_classes:
        if class_id is not None:
            raise GeneratorError(f"this {model.family} model is unconditional; --class-id not accepted")
        return None
    return int(class_id) if class_id is not None else i % model.num_classes  # balanced by default


def generate_images(model, n: int, *, seed: int = 0, batch: int = 64, class_id: int | None = None,
                    start: int = 0, **sampler: Any):
    """Yield ``(index, image HxWx3 uint8, per-image seed, class id)`` in batches."""
    for i, img, s, c, _ in generate_with_info(model, n, seed=seed, batch=batch, class_id=class_id, start=start,
                                              **sampler):
        yield i, img, s, c


def generate_with_info(model, n: int, *, seed: int = 0, batch: int = 64, class_id: int | None = None,
                       start: int = 0, **sampler: Any):
    """Like :func:`generate_images`, plus a per-image dict: for image-to-image models the input
    photograph (``"input"``) and the mask (``"mask"``, HxW bool, or None)."""
    settings = sampler_settings(model, **sampler)
    if getattr(model, "image_to_image", False):
        batch = min(batch, 16)  # real-resolution inputs: keep the batch's memory bounded
    for b0 in range(start, n, batch):
        idx = list(range(b0, min(n, b0 + batch)))
        seeds = [image_seed(seed, i) for i in idx]
        classes = [class_for_index(model, i, class_id) for i in idx]
        cls = classes if model.num_classes else None
        if hasattr(model, "sample_with_info"):
            imgs, extra = model.sample_with_info(seeds, cls, **settings)
        else:
            imgs, extra = model.sample(seeds, cls, **settings), [{} for _ in idx]
        yield from zip(idx, imgs.numpy(), seeds, classes, extra, strict=True)


def generate_to_corpus(
    model: str | Path | LoadedGenerator,
    out: str | Path,
    *,
    n: int,
    seed: int = 0,
    batch: int = 64,
    class_id: int | None = None,
    device: str = "auto",
    image_format: str = "PNG",
    resume: bool = False,
    overwrite: bool = False,
    command: str | None = None,
    on_image: Callable[[int], None] | None = None,
    keep: int = 0,
    **sampler: Any,
) -> dict[str, Any]:
    """Write ``n`` samples of ``model`` to corpus ``out``; returns a summary (and the first
    ``keep`` images under ``"preview"``, for a grid). Memory stays constant in ``n``."""
    lg = model if isinstance(model, LoadedGenerator) else load_generator(model, device, info=True)
    g = lg.model
    settings = sampler_settings(g, **sampler)
    card = {
        "generator": {"name": lg.name, "path": str(lg.path), "family": g.family,
                      "checkpoint_sha256": lg.sha256, "config": g.config,
                      "trained_by": lg.card.get("command")},
        "sampler": settings,
        "base_seed": seed,
        "seed_rule": "image i uses genvis_trust.generators.image_seed(base_seed, i)",
        "requested": n,
        "class_id": class_id,
        "device": str(g.device),
        "command": command,
    }
    if getattr(g, "image_to_image", False):  # a bad --input or --size fails before any file is written
        g.draw([image_seed(seed, 0)], input=settings["input"], size=settings["size"])
    preview: list[np.ndarray] = []
    with CorpusWriter(out, card=card, image_format=image_format, resume=resume, overwrite=overwrite) as w:
        start = w.count
        for i, img, s, c, extra in generate_with_info(g, n, seed=seed, batch=batch, class_id=class_id,
                                                      start=start, **settings):
            meta = {"generator": lg.name, "index": i, "base_seed": seed, "sampler": settings}
            if extra.get("input"):
                meta["input"] = extra["input"]
            w.add(img, label="generated", source=f"genvis-trust:{lg.name}", key=f"{lg.name}/{seed}/{i}",
                  group=f"{lg.name}/{seed}/{i}", class_id=c, family=g.family, seed=s,
                  checkpoint_sha256=lg.sha256, meta=meta, mask=extra.get("mask"))
            if len(preview) < keep:
                preview.append(img)
            if on_image:
                on_image(i)
        written = w.count
    return {"out": str(out), "images": written, "resumed_from": start, "family": g.family,
            "checkpoint_sha256": lg.sha256, "sampler": settings, "preview": preview}


def regenerate(model, record: dict[str, Any]) -> np.ndarray:
    """Re-draw one corpus image from its manifest record (seed, class, sampler settings)."""
    data = record.data if hasattr(record, "data") else record
    settings = dict(data["meta"]["sampler"])
    classes = [data["class_id"]] if model.num_classes else None
    return model.sample([int(data["seed"])], classes, **settings)[0].numpy()
