"""The one training loop every family shares.

Data: the ``train`` split of any source, as ``image_size`` patches held in memory as
uint8. Every step draws its batch and its torch randomness from ``(seed, step)``, so a
resumed run continues exactly the stream an uninterrupted one would have seen.
Checkpoints (artifact + ``train_state.safetensors``) are written every
``checkpoint_every`` steps and at the end; ``resume=True`` continues from the last one.
"""

from __future__ import annotations

import hashlib
import math
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from genvis_trust import __version__

from .artifact import (
    CONFIG,
    TRAIN_STATE,
    load_train_state,
    read_json,
    save_generator,
    save_train_state,
)
from .base import Generator, GeneratorError, create_generator, resolve_device

DEFAULT_PATCHES = 10_000  # for sources with few, large images (photos): patches to cut


def _derived(seed: int, *parts: object) -> int:
    h = hashlib.sha256("\x1f".join(map(str, (seed, *parts))).encode()).digest()
    return int.from_bytes(h[:8], "little") >> 1


@dataclass
class TrainingData:
    images: torch.Tensor  # uint8 (N, 3, H, W)
    class_ids: torch.Tensor | None  # long (N,) or None
    spec: dict[str, Any]
    num_classes: int | None

    def __len__(self) -> int:
        return int(self.images.shape[0])


def load_data(
    data: str, *, image_size: int = 32, n: int | None = None, seed: int = 0, split: str = "train"
) -> TrainingData:
    """All images of one split of source ``data`` as ``image_size`` squares, in memory."""
    from genvis_trust.datasets import get_source

    probe = get_source(data, patch=image_size, seed=seed, split=split)
    if n is None:
        items = len(probe.split_items())
        n = items if items >= 1000 else DEFAULT_PATCHES
    src = get_source(data, patch=image_size, n=n, seed=seed, split=split)
    imgs, cls = [], []
    for s in src:
        imgs.append(s.image)
        cls.append(s.class_id)
    if not imgs:
        raise GeneratorError(f"source {data!r} has no images in split {split!r}")
    x = torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2).contiguous()
    y = None
    if all(c is not None for c in cls):
        y = torch.as_tensor(cls, dtype=torch.long)
    spec = {**src.spec(), "images": len(imgs)}
    return TrainingData(x, y, spec, getattr(src, "num_classes", None))


@dataclass
class TrainResult:
    out: Path
    step: int
    wall_time_s: float
    losses: dict[str, float]
    checkpoint_sha256: str
    card: dict[str, Any] = field(default_factory=dict)


def train_generator(
    family: str,
    out: str | Path,
    *,
    data: str | TrainingData = "builtin-photos",
    steps: int = 1000,
    batch: int = 64,
    lr: float | None = None,
    device: str = "auto",
    seed: int = 0,
    n: int | None = None,
    conditional: bool = False,
    config: dict[str, Any] | None = None,
    resume: bool = False,
    checkpoint_every: int = 500,
    time_budget_s: float | None = None,
    eval_n: int = 256,
    command: str | None = None,
    on_step: Callable[[int, dict[str, float]], None] | None = None,
) -> TrainResult:
    """Train ``family`` on ``data`` into artifact folder ``out``; returns a :class:`TrainResult`.

    ``conditional``: condition on the source's class ids (e.g. digits).
    ``time_budget_s``: stop early (and checkpoint) once this much wall time has passed.
    """
    out = Path(out)
    dev = resolve_device(device)
    config = dict(config or {})
    prior_card: dict[str, Any] = {}
    if resume:
        if not (out / TRAIN_STATE).is_file():
            raise GeneratorError(f"{out}: no {TRAIN_STATE} to resume from")
        saved = read_json(out / CONFIG)
        if saved["family"] != family:
            raise GeneratorError(f"{out}: holds a {saved['family']} model, not {family}")
        config = saved["config"]
        prior_card = read_json(out / "card.json")
        data_spec = prior_card.get("data", {})
        if isinstance(data, str) and data_spec.get("source") not in (None, data):
            raise GeneratorError(f"{out}: was trained on {data_spec.get('source')!r}, not {data!r}")
        n = data_spec.get("n", n)
        seed = prior_card.get("seed", seed)
        batch = prior_card.get("batch", batch)
    elif (out / TRAIN_STATE).is_file():
        raise GeneratorError(f"{out}: a training run exists here; pass resume=True to continue it, or choose another folder")

    image_size = int(config.get("image_size", 32))
    td = data if isinstance(data, TrainingData) else load_data(data, image_size=image_size, n=n, seed=seed)
    if conditional or config.get("num_classes"):
        if td.class_ids is None or not td.num_classes:
            raise GeneratorError(f"source {td.spec.get('source')!r} has no class labels; cannot condition")
        config.setdefault("num_classes", td.num_classes)
    torch.manual_seed(_derived(seed, "init"))
    model: Generator = create_generator(family, **config).to(dev)
    optimizers = model.configure_optimizers(lr)
    start = 0
    if resume:
        start = load_train_state(model, optimizers, out)
    model.train()
    x_all = td.images
    y_all = td.class_ids if model.num_classes else None
    t_prior = float(prior_card.get("wall_time_s", 0.0))
    t0 = time.time()
    window: dict[str, list[float]] = {}
    step = start
    sha = ""
    while step < steps:
        rng = np.random.default_rng(_derived(seed, "batch", step))
        idx = torch.from_numpy(rng.choice(len(x_all), size=min(batch, len(x_all)), replace=False))
        torch.manual_seed(_derived(seed, "step", step))
        xb = x_all[idx].to(dev)
        yb = y_all[idx].to(dev) if y_all is not None else None
        losses = model.training_step(xb, yb, optimizers, step)
        bad = {k: v for k, v in losses.items() if not math.isfinite(v)}
        if bad:
            raise GeneratorError(f"{family}: non-finite loss at step {step}: {bad}")
        model.after_step(step)
        step += 1
        for k, v in losses.items():
            window.setdefault(k, []).append(v)
            del window[k][:-50]
        if on_step:
            on_step(step, losses)
        over_budget = time_budget_s is not None and time.time() - t0 >= time_budget_s
        if step % checkpoint_every == 0 or step == steps or over_budget:
            sha = _checkpoint(model, optimizers, step, out, td, window, t_prior + time.time() - t0,
                              dev, seed, batch, lr, command, eval_n=0)
        if over_budget:
            break
    # final card with held-out metrics (cheap ones only; FID etc. via `generators evaluate`)
    sha = _checkpoint(model, optimizers, step, out, td, window, t_prior + time.time() - t0,
                      dev, seed, batch, lr, command, eval_n=eval_n, prior=prior_card)
    card = read_json(out / "card.json")
    avg = {k: float(np.mean(v)) for k, v in window.items()}
    return TrainResult(out, step, card["wall_time_s"], avg, sha, card)


def _checkpoint(model, optimizers, step, out, td, window, wall, dev, seed, batch, lr, command, *,
                eval_n: int, prior: dict | None = None) -> str:
    out.mkdir(parents=True, exist_ok=True)
    metrics: dict[str, Any] = dict((prior or {}).get("metrics", {}))
    if eval_n and model.has_likelihood:
        metrics.update(heldout_bits_per_dim(model, td.spec["source"], n=eval_n, seed=seed))
    card = {
        "data": td.spec,
        "steps": step,
        "batch": batch,
        "lr": lr,
        "seed": seed,
        "wall_time_s": round(wall, 2),
        "train_losses_last50": {k: round(float(np.mean(v)), 5) for k, v in window.items()},
        "metrics": metrics,
        "command": command,
        "device": str(dev),
        "cpu_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "toolkit_version": __version__,
    }
    save_train_state(model, optimizers, step, out)
    return save_generator(model, out, card)


@torch.no_grad()
def heldout_bits_per_dim(model: Generator, source: str, *, n: int = 256, seed: int = 0) -> dict[str, Any]:
    """Mean bits/dim on ``n`` images of the held-out ``test`` split (conditional models use labels)."""
    td = load_data(source, image_size=model.image_size, n=n, seed=seed, split="test")
    was = model.training
    model.eval()
    vals = []
    for i in range(0, len(td), 64):
        x = td.images[i : i + 64].to(model.device)
        y = td.class_ids[i : i + 64].to(model.device) if (model.num_classes and td.class_ids is not None) else None
        vals.append(model.bits_per_dim(x, y).cpu())
    model.train(was)
    bpd = float(torch.cat(vals).mean())
    kind = getattr(model, "likelihood_kind", "")
    return {"test_bits_per_dim": round(bpd, 4), "bits_per_dim_kind": kind, "bits_per_dim_n": len(td),
            "bits_per_dim_reference": f"{source} split=test"}
