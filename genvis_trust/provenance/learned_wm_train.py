"""Training of the learned watermark (:mod:`.learned_wm`): attack stand-ins, curriculum, loop.

``genvis-trust watermark train --data photos-native --out DIR`` runs :func:`train`:

- **data**: random crops (40-100% of the shorter side, any position) of the training split's
  photographs, resized (area) to ``train_size`` (2x the working size: attacks act on
  pixels finer than the encoder's, as they do on a real image);
- **step**: the encoder's residual (working size) is resized to ``train_size``, scaled to the
  target RMS, added, rounded to uint8 (straight-through), attacked, resized (area) to the
  working size and decoded; the loss is the binary cross-entropy of the logits against the
  payload bits (the residual's size is fixed by the RMS scaling, so there is no quality term
  to balance);
- **attacks**, differentiable stand-ins, one chain per batch: a geometric one (resize, crop
  with any aspect and position, rotation), a photometric one (brightness, contrast,
  saturation, Gaussian blur, Gaussian noise), then JPEG, either a differentiable
  approximation (8x8 DCT, the standard tables scaled by quality, 4:2:0 chroma, cubic
  rounding) or the real codec (OpenCV) through a straight-through step;
- **curriculum**: every attack's strength grows linearly from none to full over the first
  ``curriculum`` fraction of the steps, while the residual shrinks from ``1 + warmup_boost``
  times its target RMS to the target;
- **checkpoints** every ``checkpoint_minutes`` (model, Adam state, step, random states) in
  ``DIR/checkpoint``; ``resume=True`` continues from there with the same schedule;
- **calibration** at the end: the median logit per bit on unmarked training photographs
  becomes the model's ``bias``, so each bit of an unmarked image is about a fair coin.
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from .learned_wm import DEFAULT_CONFIG, FAMILY, build_model, key_bits, save_model, standardise
from .learned_wm_attacks import ATTACKS, apply_attacks, diff_jpeg

__all__ = ["ATTACKS", "TRAIN_DEFAULTS", "apply_attacks", "calibrate", "calibration_images", "diff_jpeg", "load_training_photos", "train"]

TRAIN_DEFAULTS = {
    "steps": 3000,
    "batch": 16,
    "lr": 1e-3,
    "train_size": 128,
    "curriculum": 0.4,
    "warmup_boost": 4.0,
    "seed": 0,
}


# --------------------------------------------------------------------------- attack stand-ins

def load_training_photos(data: str = "photos-native", split: str = "train", max_side: int = 512,
                         n: int | None = None) -> tuple[list[np.ndarray], dict]:
    """The ``split`` photographs of source ``data``, each shrunk (area) to at most ``max_side``."""
    import cv2

    from genvis_trust.datasets import get_source

    src = get_source(data, split=split)
    imgs = []
    for s in src:
        im = s.image
        f = max_side / max(im.shape[:2])
        if f < 1:
            im = cv2.resize(im, (max(1, round(im.shape[1] * f)), max(1, round(im.shape[0] * f))), interpolation=cv2.INTER_AREA)
        imgs.append(np.ascontiguousarray(im))
        if n is not None and len(imgs) >= n:
            break
    if not imgs:
        raise ValueError(f"{data}: no {split} photographs")
    return imgs, {"source": data, "split": split, "photos": len(imgs), "max_side": max_side}


def _batch(photos: Sequence[np.ndarray], batch: int, size: int, rng: np.random.Generator) -> np.ndarray:
    import cv2

    out = np.empty((batch, 3, size, size), np.float32)
    for i in range(batch):
        im = photos[int(rng.integers(len(photos)))]
        h, w = im.shape[:2]
        side = int(rng.integers(max(8, int(0.4 * min(h, w))), min(h, w) + 1))
        t, left = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
        crop = cv2.resize(im[t : t + side, left : left + side], (size, size), interpolation=cv2.INTER_AREA)
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        out[i] = crop.transpose(2, 0, 1) / np.float32(255)
    return out


# --------------------------------------------------------------------------- loop


def _embed_train(model, x, bits, cfg, boost: float = 1.0):
    """Marked batch at ``x``'s size: residual at the working size, resized, RMS-scaled
    (``boost`` times the target), uint8 (ST)."""
    from torch.nn import functional as F

    work = cfg["work"]
    xw = F.interpolate(x, size=(work, work), mode="area")
    r = model.encoder(xw * 2 - 1, bits * 2 - 1)
    r = F.interpolate(r, size=x.shape[-2:], mode="bilinear", align_corners=False)
    r = r * (boost * cfg["target_rms"] / (r.pow(2).mean(dim=(1, 2, 3), keepdim=True).sqrt() + 1e-8))
    y = (x + r).clamp(0, 1)
    return y + ((y * 255).round() / 255 - y).detach()


def _decode_train(model, y, cfg):
    from torch.nn import functional as F

    work = cfg["work"]
    big = min(y.shape[-2:]) >= work
    yw = F.interpolate(y, size=(work, work), mode="area" if big else "bilinear", **({} if big else {"align_corners": False}))
    return model.decoder(standardise(yw))


def _save_checkpoint(d: Path, model, opt, step: int, rng: np.random.Generator, extra: dict) -> None:
    import torch
    from safetensors.torch import save_file

    from genvis_trust.atomic import atomic_path, atomic_write_text

    d.mkdir(parents=True, exist_ok=True)
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    adam_steps = {}
    for i, p in enumerate(opt.param_groups[0]["params"]):
        st = opt.state.get(p)
        if st:
            tensors[f"adam.{i}.exp_avg"] = st["exp_avg"].cpu().contiguous()
            tensors[f"adam.{i}.exp_avg_sq"] = st["exp_avg_sq"].cpu().contiguous()
            adam_steps[str(i)] = float(st["step"])
    tensors["torch_rng"] = torch.get_rng_state()
    with atomic_path(d / "state.safetensors") as tmp:
        save_file(tensors, str(tmp))
    atomic_write_text(d / "state.json", json.dumps({"step": step, "adam_steps": adam_steps,
                                                    "numpy_rng": rng.bit_generator.state, **extra}, indent=1) + "\n")


def _load_checkpoint(d: Path, model, opt) -> tuple[int, dict, dict]:
    import torch
    from safetensors.torch import load_file

    meta = json.loads((d / "state.json").read_text())
    t = load_file(str(d / "state.safetensors"))
    model.load_state_dict({k[6:]: v for k, v in t.items() if k.startswith("model.")})
    for i, p in enumerate(opt.param_groups[0]["params"]):
        if f"adam.{i}.exp_avg" in t:
            opt.state[p] = {"step": torch.tensor(meta["adam_steps"][str(i)]), "exp_avg": t[f"adam.{i}.exp_avg"],
                            "exp_avg_sq": t[f"adam.{i}.exp_avg_sq"]}
    torch.set_rng_state(t["torch_rng"])
    return int(meta["step"]), meta["numpy_rng"], meta


def calibration_images(photos: Sequence[np.ndarray], crops: int = 4, seed: int = 1) -> list[np.ndarray]:
    """Unmarked images to calibrate on: each photograph whole and as ``crops`` random crops
    (30-100% of the shorter side), as the decoder meets them."""
    rng = np.random.default_rng(seed)
    out = []
    for im in photos:
        out.append(im)
        h, w = im.shape[:2]
        for _ in range(crops):
            side = int(rng.integers(max(16, int(0.3 * min(h, w))), min(h, w) + 1))
            t, left = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
            out.append(np.ascontiguousarray(im[t : t + side, left : left + side]))
    return out


def calibrate(model, cfg: dict, photos: Sequence[np.ndarray], device="cpu") -> dict:
    """Set ``model.bias`` to the median logit per bit of unmarked ``photos`` (as given: pass
    :func:`calibration_images` for crops too), and return how fair the calibrated bits are on
    them."""
    import torch

    from .learned_wm import to_work

    model.eval()
    with torch.inference_mode():
        x = torch.from_numpy(to_work(photos, cfg["work"])).to(device)
        lg = torch.cat([model.decoder(standardise(x[s : s + 64])) for s in range(0, len(x), 64)])
    model.bias.copy_(lg.median(dim=0).values)
    bits = ((lg - model.bias) > 0).cpu().numpy()
    return {"images": len(photos), "bit_one_rate_min": round(float(bits.mean(0).min()), 3),
            "bit_one_rate_max": round(float(bits.mean(0).max()), 3)}


def train(
    out: str | Path,
    photos: Sequence[np.ndarray],
    *,
    data_info: dict | None = None,
    config: dict | None = None,
    steps: int = TRAIN_DEFAULTS["steps"],
    batch: int = TRAIN_DEFAULTS["batch"],
    lr: float = TRAIN_DEFAULTS["lr"],
    train_size: int = TRAIN_DEFAULTS["train_size"],
    curriculum: float = TRAIN_DEFAULTS["curriculum"],
    warmup_boost: float = TRAIN_DEFAULTS["warmup_boost"],
    seed: int = TRAIN_DEFAULTS["seed"],
    device: str = "auto",
    resume: bool = False,
    checkpoint_minutes: float = 3.0,
    max_minutes: float | None = None,
    command: str | None = None,
    log: Callable[[str], None] | None = None,
) -> dict:
    """Train (or resume) a learned watermark on ``photos``; write the artifact to ``out``.

    Stops after ``steps`` or ``max_minutes`` of this run (then the artifact is written from
    where it stopped and a later ``resume`` continues). Returns the card.
    """
    import torch
    from torch.nn import functional as F

    from genvis_trust.devices import resolve_device

    dev = resolve_device(device)
    out = Path(out)
    ckpt = out / "checkpoint"
    cfg = {**DEFAULT_CONFIG, **(config or {})}
    if train_size % cfg["work"] or cfg["work"] % 8:
        raise ValueError(f"train_size {train_size} must be a multiple of work {cfg['work']}, itself a multiple of 8")
    torch.manual_seed(seed)
    model = build_model(cfg).to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    rng = np.random.default_rng(seed)
    step, wall_before = 0, 0.0
    recipe = {"steps": steps, "batch": batch, "lr": lr, "train_size": train_size, "curriculum": curriculum,
              "warmup_boost": warmup_boost, "seed": seed, "config": cfg}
    if resume:
        if not (ckpt / "state.json").is_file():
            raise FileNotFoundError(f"{ckpt}: no checkpoint to resume from")
        step, rng_state, meta = _load_checkpoint(ckpt, model, opt)
        # the step count may grow (a longer run); anything else must match
        if {**(meta.get("recipe") or {}), "steps": steps} != json.loads(json.dumps(recipe)):
            raise ValueError(f"{ckpt}: checkpoint was made with another recipe: {meta.get('recipe')}")
        rng.bit_generator.state = rng_state
        wall_before = float(meta.get("wall_s", 0.0))
        model.to(dev)
        for st in opt.state.values():
            for k in ("exp_avg", "exp_avg_sq"):
                st[k] = st[k].to(dev)
    log = log or (lambda s: print(s, file=sys.stderr, flush=True))
    t0 = last_ck = time.perf_counter()
    history = []
    acc_ema = loss_ema = None
    model.train()
    while step < steps:
        if max_minutes is not None and time.perf_counter() - t0 > 60 * max_minutes:
            log(f"stopping at step {step}: --max-minutes {max_minutes} reached")
            break
        s = min(1.0, step / max(1.0, curriculum * steps))
        # cosine decay over the last half
        frac = step / steps
        for g in opt.param_groups:
            g["lr"] = lr if frac < 0.5 else lr * 0.5 * (1 + math.cos(math.pi * (frac - 0.5) / 0.5))
        x = torch.from_numpy(_batch(photos, batch, train_size, rng)).to(dev)
        bits = torch.from_numpy(rng.integers(0, 2, (batch, cfg["n_bits"])).astype(np.float32)).to(dev)
        # the residual starts (1 + warmup_boost) times stronger and shrinks to its target over
        # the curriculum: a decoder finds a loud signal first, then learns to read it quietly
        boost = 1.0 + warmup_boost * max(0.0, 1.0 - s)
        y = _embed_train(model, x, bits, cfg, boost)
        ya, names = apply_attacks(y, s, rng)
        logits = _decode_train(model, ya, cfg)
        loss = F.binary_cross_entropy_with_logits(logits, bits)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        acc = float(((logits > 0).float() == bits).float().mean())
        acc_ema = acc if acc_ema is None else 0.95 * acc_ema + 0.05 * acc
        lv = float(loss.detach())
        loss_ema = lv if loss_ema is None else 0.95 * loss_ema + 0.05 * lv
        if step % 50 == 0 or step == steps:
            el = wall_before + time.perf_counter() - t0
            history.append({"step": step, "strength": round(s, 3), "loss": round(loss_ema, 4),
                            "bit_acc": round(acc_ema, 4), "wall_s": round(el, 1)})
            log(f"step {step}/{steps} strength {s:.2f} loss {loss_ema:.4f} bit_acc {acc_ema:.4f} "
                f"({el / 60:.1f} min) {'+'.join(names)}")
        if time.perf_counter() - last_ck > 60 * checkpoint_minutes:
            _save_checkpoint(ckpt, model, opt, step, rng, {"recipe": recipe,
                                                           "wall_s": wall_before + time.perf_counter() - t0})
            last_ck = time.perf_counter()
    wall = wall_before + time.perf_counter() - t0
    _save_checkpoint(ckpt, model, opt, step, rng, {"recipe": recipe, "wall_s": wall})
    fairness = calibrate(model, cfg, calibration_images(photos), dev)
    card = {
        "about": "learned watermark trained by genvis-trust (provenance/learned_wm_train.py)",
        "family": FAMILY,
        "data": data_info or {"photos": len(photos)},
        "recipe": recipe,
        "steps_done": step,
        "wall_s": round(wall, 1),
        "device": str(dev),
        "torch_threads": torch.get_num_threads(),
        "command": command,
        "calibration": fairness,
        "key_bits": "".join(map(str, key_bits(cfg).tolist())),
        "history": history[-20:],
    }
    save_model(out, model.cpu(), cfg, card)
    return card
