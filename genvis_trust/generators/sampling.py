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
    if model.family == "diffusion" and settings.get("sampler") == "ancestral":
        settings["steps"] = model.timesteps
    if model.family == "diffusion" and not model.num_classes:
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
    settings = sampler_settings(model, **sampler)
    for b0 in range(start, n, batch):
        idx = list(range(b0, min(n, b0 + batch)))
        seeds = [image_seed(seed, i) for i in idx]
        classes = [class_for_index(model, i, class_id) for i in idx]
        imgs = model.sample(seeds, classes if model.num_classes else None, **settings).numpy()
        yield from zip(idx, imgs, seeds, classes, strict=True)


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
    preview: list[np.ndarray] = []
    with CorpusWriter(out, card=card, image_format=image_format, resume=resume, overwrite=overwrite) as w:
        start = w.count
        for i, img, s, c in generate_images(g, n, seed=seed, batch=batch, class_id=class_id, start=start,
                                           **settings):
            w.add(img, label="generated", source=f"genvis-trust:{lg.name}", key=f"{lg.name}/{seed}/{i}",
                  group=f"{lg.name}/{seed}/{i}", class_id=c, family=g.family, seed=s,
                  checkpoint_sha256=lg.sha256,
                  meta={"generator": lg.name, "index": i, "base_seed": seed, "sampler": settings})
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
