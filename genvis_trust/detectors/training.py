"""Train a detector on real vs generated images: one loop for every gradient-trained family,
a closed-form fit for ``freq-logreg``; early stopping and calibration on a validation split.

The recipe:
- balanced batches (half real, half generated), random ``patch`` crops and flips;
- blur + JPEG augmentation applied to *both* classes with configurable probabilities
  (Wang et al. 2020 found it the main lever for generalisation);
- a **format guard**: if one class arrives mostly JPEG-derived and the other lossless, the
  network would learn "JPEG or not" instead of "real or generated". Training refuses such
  data unless ``reencode`` sends every image of both classes through the same codec;
- validation by source group (never the test split) for early stopping and calibration.
"""

from __future__ import annotations

import copy
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from genvis_trust.datasets.base import Source
from genvis_trust.datasets.perturbations import (
    Compose,
    RandomApply,
    Range,
    create_perturbation,
    parse_perturbation,
)
from genvis_trust.devices import resolve_device

from .calibration import apply_calibration, fit_calibration
from .detector import Detector
from .metrics import ece, roc_auc

LOSSY = {"jpeg", "jpg", "webp"}


class TrainingError(ValueError):
    pass


@dataclass
class TrainConfig:
    steps: int = 2000
    batch: int = 64
    lr: float = 1e-3
    weight_decay: float = 1e-4
    blur_p: float = 0.1
    blur_sigma: tuple[float, float] = (0.0, 2.0)
    jpeg_p: float = 0.1
    jpeg_quality: tuple[int, int] = (60, 100)
    resize_p: float = 0.0  # down-scale (area) before the final crop: survives resized copies
    resize_range: tuple[float, float] = (0.5, 1.0)
    upscale_p: float = 0.0  # enlarge (bicubic) on both classes: an up-scaled photo is no cue
    upscale_range: tuple[float, float] = (1.2, 2.0)
    hflip: bool = True
    val_crops: int = 1  # fixed crops per validation image (centre, then an even grid)
    # aligned pairs (a real photo and its reconstruction, matched by group) get the same crop and
    # augmentation in the same batch, so only the decoder's traces tell them apart
    paired: bool = False
    pair_share: float = 0.5  # share of each batch drawn as pairs; the rest class-balanced
    eval_every: int = 100
    patience: int = 5  # evaluations without improvement before stopping
    calibration: str = "platt"
    reencode: str | None = None  # a perturbation spec applied to every image, e.g. "jpeg:quality=95"
    seed: int = 0
    max_images_per_class: int = 20000


@dataclass
class LabeledImages:
    images: list[np.ndarray]
    labels: np.ndarray  # 1 generated, 0 real
    families: list[str]
    encodings: list[str]
    groups: list[str] = field(default_factory=list)
    crops: list = field(default_factory=list)  # [x, y, w, h] of the real region a reconstruction covers


def encoding_of(sample) -> str:
    """``jpeg``/``png``/... of the file a sample came from, or ``raw`` for in-memory data."""
    enc = sample.meta.get("encoding")
    if enc:
        return str(enc).lower()
    path = sample.meta.get("path") or ""
    suffix = Path(path).suffix.lower().lstrip(".")
    return {"jpg": "jpeg", "jpe": "jpeg", "jfif": "jpeg"}.get(suffix, suffix or "raw")


def collect(sources: Sequence[Source], label: int, *, limit: int, family_default: str) -> LabeledImages:
    imgs, fams, encs, groups, crops = [], [], [], [], []
    per = max(1, limit // max(1, len(sources)))
    for src in sources:
        for k, s in enumerate(src):
            if k >= per:
                break
            imgs.append(s.image)
            fams.append(str(s.meta.get("family") or (family_default if label == 0 else s.source)))
            encs.append(encoding_of(s))
            groups.append(s.group)
            crops.append((s.meta.get("aligned_to") or {}).get("crop"))
    return LabeledImages(imgs, np.full(len(imgs), label, np.int64), fams, encs, groups, crops)


def merge(a: LabeledImages, b: LabeledImages) -> LabeledImages:
    return LabeledImages(
        a.images + b.images,
        np.concatenate([a.labels, b.labels]),
        a.families + b.families,
        a.encodings + b.encodings,
        a.groups + b.groups,
        a.crops + b.crops,
    )


def lossy_share(encodings: list[str]) -> float:
    return float(np.mean([e in LOSSY for e in encodings])) if encodings else 0.0


def format_guard(real: LabeledImages, fake: LabeledImages, reencode: str | None, tolerance: float = 0.2) -> dict:
    """Compare the share of JPEG/WebP-derived images per class; refuse a mismatch unless re-encoding."""
    r, f = lossy_share(real.encodings), lossy_share(fake.encodings)
    report = {"real_lossy_share": round(r, 3), "generated_lossy_share": round(f, 3), "reencode": reencode}
    if abs(r - f) > tolerance and reencode is None:
        raise TrainingError(
            f"format mismatch: {r:.0%} of real images but {f:.0%} of generated images come from lossy "
            "(JPEG/WebP) files. A detector trained on this learns the codec, not the generator. "
            "Pass reencode='jpeg:quality=95' (CLI: --reencode jpeg:quality=95) to send both classes "
            "through the same codec, or use data stored the same way."
        )
    return report


def augmentation(cfg: TrainConfig):
    parts = []
    if cfg.resize_p > 0:
        parts.append(RandomApply(cfg.resize_p, create_perturbation("resize", factor=Range(*cfg.resize_range), method="area")))
    if cfg.upscale_p > 0:
        parts.append(RandomApply(cfg.upscale_p, create_perturbation("resize", factor=Range(*cfg.upscale_range), method="bicubic")))
    if cfg.blur_p > 0:
        parts.append(RandomApply(cfg.blur_p, create_perturbation("gaussian_blur", sigma=Range(*cfg.blur_sigma))))
    if cfg.jpeg_p > 0:
        parts.append(RandomApply(cfg.jpeg_p, create_perturbation("jpeg", quality=Range(*cfg.jpeg_quality))))
    return Compose(parts) if parts else None


def _crop(img: np.ndarray, patch: int, rng: np.random.Generator | None) -> np.ndarray:
    h, w = img.shape[:2]
    if h < patch or w < patch:
        import cv2

        f = patch / min(h, w)
        img = cv2.resize(img, (max(patch, round(w * f)), max(patch, round(h * f))), interpolation=cv2.INTER_CUBIC)
        h, w = img.shape[:2]
    if rng is None:
        y, x = (h - patch) // 2, (w - patch) // 2
    else:
        y, x = int(rng.integers(0, h - patch + 1)), int(rng.integers(0, w - patch + 1))
    return img[y : y + patch, x : x + patch]


def fixed_patches(images: list[np.ndarray], patch: int, crops: int = 1) -> np.ndarray:
    """Deterministic crops for evaluation: the centre crop, then ``crops - 1`` more drawn from a
    fixed seed per image (so a small validation set still gives many patches)."""
    out = []
    for k, im in enumerate(images):
        out.append(_crop(im, patch, None))
        rng = np.random.default_rng(k)
        out += [_crop(im, patch, rng) for _ in range(crops - 1)]
    return np.stack(out) if out else np.zeros((0, patch, patch, 3), np.uint8)


def _one(im: np.ndarray, patch: int, aug, rng: np.random.Generator, hflip: bool, margin: float = 1.0) -> np.ndarray:
    if aug is not None:
        # crop first: augmenting a whole 12-megapixel photo to keep one patch wastes the step
        big = int(np.ceil(patch * margin)) + 8
        if im.shape[0] > big and im.shape[1] > big:
            im = _crop(im, big, rng)
        im = aug(im, rng)
    im = _crop(im, patch, rng)
    if hflip and rng.random() < 0.5:
        im = im[:, ::-1]
    return im


def _batch(data: LabeledImages, idx: np.ndarray, patch: int, aug, rng: np.random.Generator, hflip: bool, margin: float = 1.0):
    out = np.empty((len(idx), patch, patch, 3), np.uint8)
    for j, i in enumerate(idx):
        out[j] = _one(data.images[i], patch, aug, rng, hflip, margin)
    return out, data.labels[idx]


def aligned_pairs(data: LabeledImages) -> list[tuple[int, int]]:
    """(real index, generated index) of images sharing a group: a photo and its reconstruction."""
    real_of: dict[str, int] = {}
    for i in np.flatnonzero(data.labels == 0):
        g = data.groups[i] if i < len(data.groups) else None
        if g is not None:
            real_of[g] = -1 if g in real_of else int(i)  # ambiguous groups (patch sources) pair nothing
    pairs = []
    for i in np.flatnonzero(data.labels == 1):
        r = real_of.get(data.groups[i] if i < len(data.groups) else None, -1)
        if r >= 0:
            pairs.append((r, int(i)))
    return pairs


def _pair_batch(data: LabeledImages, pairs, n_pairs: int, patch: int, aug, rng: np.random.Generator, hflip: bool, margin: float):
    """``n_pairs`` pairs, each cut and augmented identically (one seed per pair)."""
    out = np.empty((2 * n_pairs, patch, patch, 3), np.uint8)
    for j, k in enumerate(rng.integers(0, len(pairs), n_pairs)):
        ri, fi = pairs[k]
        real, fake = data.images[ri], data.images[fi]
        box = data.crops[fi] if fi < len(data.crops) else None
        if box is not None:  # the reconstruction covers only this region of the photo
            x, y, w, h = box
            real = real[y : y + h, x : x + w]
        if real.shape != fake.shape:
            raise TrainingError(f"aligned pair of group {data.groups[fi]!r}: shapes {real.shape} and {fake.shape} differ")
        seed = int(rng.integers(0, 2**63))
        out[2 * j] = _one(real, patch, aug, np.random.default_rng(seed), hflip, margin)
        out[2 * j + 1] = _one(fake, patch, aug, np.random.default_rng(seed), hflip, margin)
    return out, np.tile(np.array([0, 1], np.int64), n_pairs)


class _EarlyStop:
    """Keep the weights of the best validation loss; stop after ``patience`` evaluations
    without an improvement of more than 1e-4."""

    def __init__(self, patience: int):
        self.patience, self.best, self.state, self.bad = patience, float("inf"), None, 0

    def stop(self, loss: float, net: torch.nn.Module) -> bool:
        if loss < self.best - 1e-4:
            self.best, self.state, self.bad = loss, copy.deepcopy(net.state_dict()), 0
            return False
        self.bad += 1
        return self.bad >= self.patience

    def restore(self, net: torch.nn.Module) -> None:
        if self.state is not None:
            net.load_state_dict(self.state)


def _optimizer_step(loss: torch.Tensor, opt, sched, step: int) -> None:
    if not torch.isfinite(loss):
        raise TrainingError(f"loss became {loss.item()} at step {step}; lower the learning rate")
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    sched.step()


def _auc_or_none(y: np.ndarray, z: np.ndarray) -> float | None:
    return roc_auc(y, z) if len(np.unique(y)) == 2 else None


def _train_on_real_only(net, train, val, val_x, val_y, P, aug, rng, cfg, dev, history, log, progress) -> int:
    """Likelihood training (zero-shot families): minimise the coding cost of real crops only;
    early stopping on the real validation crops' cost."""
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=max(cfg.steps, 2), pct_start=0.1)
    real_idx = np.flatnonzero(train.labels == 0)
    vx = torch.from_numpy(val_x[val_y == 0]).permute(0, 3, 1, 2).float() / 255.0
    stopper, steps_done = _EarlyStop(cfg.patience), 0
    for step in range(1, cfg.steps + 1):
        net.train()
        xb, _ = _batch(train, rng.choice(real_idx, cfg.batch), P, aug, rng, cfg.hflip)
        loss = net.nll_loss(torch.from_numpy(xb).to(dev).permute(0, 3, 1, 2).float() / 255.0)
        _optimizer_step(loss, opt, sched, step)
        steps_done = step
        if progress:
            progress(step, cfg.steps)
        if step % cfg.eval_every == 0 or step == cfg.steps:
            net.eval()
            with torch.no_grad():
                vloss = float(net.nll_loss(vx.to(dev)))
                z = -net.statistic(torch.from_numpy(val_x).permute(0, 3, 1, 2).float().to(dev) / 255.0).cpu().numpy()
            history.append({"step": step, "train_bits": loss.item(), "val_real_bits": vloss, "val_auc": _auc_or_none(val_y, z)})
            if stopper.stop(vloss, net):
                log(f"early stop at step {step}: real validation cost did not improve for {stopper.bad} evaluations")
                break
    stopper.restore(net)
    return steps_done


def calibrate_on_images(
    det: Detector, real: Sequence[np.ndarray], generated: Sequence[np.ndarray], method: str = "platt", fpr: float | None = None
) -> dict:
    """Refit ``det``'s calibration on whole-image scores (tiles averaged, as ``scan`` scores).

    Patch-level calibration can be dominated by an easy sub-domain (small patches of the
    bundled generators give extreme logits) and then says nothing at native resolution; a
    calibration fitted on validation *images* of the domain that matters avoids that.
    ``fpr`` (Platt only): keep the fitted slope but move p = 0.5 to the logit that only this
    share of the real validation images exceed, so the verdict threshold has a stated
    false-positive budget instead of even odds. Returns the metrics of the fit for the card.
    """
    z = np.array([s.logit for s in det.score_many(list(real) + list(generated))])
    y = np.r_[np.zeros(len(real)), np.ones(len(generated))]
    det.calibration = fit_calibration(z, y, method)
    if fpr is not None:
        if det.calibration.get("method") != "platt":
            raise TrainingError("an FPR budget applies to Platt calibration only")
        z_t = float(np.quantile(z[y == 0], 1.0 - fpr))
        if det.calibration["a"] > 0:
            det.calibration = {**det.calibration, "b": -det.calibration["a"] * z_t, "fpr_budget": fpr, "threshold_logit": z_t}
        else:  # no usable ranking: the only way to keep the budget is never to reach the threshold
            det.calibration = {**det.calibration, "a": 0.0, "b": -2.0, "fpr_budget": fpr}
    p = apply_calibration(det.calibration, z)
    return {"n_real": len(real), "n_generated": len(generated), "auc": _auc_or_none(y, z), "ece": ece(y, p),
            "threshold_tpr": float(np.mean(p[y == 1] >= 0.5)), "threshold_fpr": float(np.mean(p[y == 0] >= 0.5))}


@dataclass
class TrainResult:
    detector: Detector
    history: list[dict[str, float]]
    metrics: dict[str, Any]
    wall_time_s: float


def train_detector(
    family: str,
    real: Source | Sequence[Source],
    fake: Sequence[Source],
    *,
    real_val: Source | Sequence[Source] | None = None,
    fake_val: Sequence[Source] | None = None,
    patch: int | None = None,
    config: TrainConfig | None = None,
    device: str = "auto",
    net_config: dict | None = None,
    log: Callable[[str], None] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> TrainResult:
    """Train ``family`` on train-split ``real`` vs ``fake`` sources; validate on the val splits.

    ``real``/``fake`` are sources already restricted to their training split; ``real_val`` /
    ``fake_val`` to their validation split (the CLI builds both from the same data by group).
    """
    cfg = config or TrainConfig()
    log = log or (lambda m: print(m, file=sys.stderr))
    t0 = time.time()
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    det = Detector.create(family, patch=patch, device=device, **(net_config or {}))
    if det.whole_image:
        raise TrainingError(f"{family} reproduces a published detector that reads whole images its authors' way; "
                            f"training it on the toolkit's tiles would not be that detector: bring its published "
                            f"weights in with `genvis-trust detectors import --arch {family}`")
    dev = resolve_device(device)
    P = det.patch

    reals = [real] if isinstance(real, Source) else list(real)
    lim = cfg.max_images_per_class
    tr_real = collect(reals, 0, limit=lim, family_default="real")
    tr_fake = collect(fake, 1, limit=lim, family_default="generated")
    real_only = getattr(det.net, "trained_on_real_only", False)
    if not tr_real.images or not (tr_fake.images or real_only):
        raise TrainingError(f"need both classes: got {len(tr_real.images)} real and {len(tr_fake.images)} generated training images")
    # a likelihood model sees real images only: there is no second class whose codec could differ
    guard = format_guard(tr_real, tr_fake, cfg.reencode) if not real_only else {"reencode": cfg.reencode}
    va_real = collect([real_val] if isinstance(real_val, Source) else list(real_val or []), 0, limit=lim // 4, family_default="real")
    va_fake = collect(list(fake_val or []), 1, limit=lim // 4, family_default="generated")
    if not va_real.images or not (va_fake.images or real_only):
        raise TrainingError("need real and generated validation images for early stopping and calibration")
    reenc = parse_perturbation(cfg.reencode) if cfg.reencode else None
    train = merge(tr_real, tr_fake)
    val = merge(va_real, va_fake)
    if reenc is not None:
        train.images = [reenc(im) for im in train.images]
        val.images = [reenc(im) for im in val.images]
    log(
        f"{family}: {len(tr_real.images)} real + {len(tr_fake.images)} generated training images, "
        f"{len(va_real.images)} + {len(va_fake.images)} validation; patch {P}; device {dev}"
    )
    val_x = fixed_patches(val.images, P, cfg.val_crops)
    val_y = np.repeat(val.labels, cfg.val_crops)
    aug = augmentation(cfg)
    margin = 1.0 / cfg.resize_range[0] if cfg.resize_p > 0 else 1.0
    history: list[dict[str, float]] = []

    net = det.net
    if getattr(net, "fitted_in_closed_form", False):
        xs, ys = [], []
        for i in range(len(train.images)):
            b, y = _batch(train, np.array([i]), P, aug, rng, cfg.hflip, margin)
            xs.append(b[0])
            ys.append(y[0])
        x = torch.from_numpy(np.stack(xs)).permute(0, 3, 1, 2).float() / 255.0
        with torch.no_grad():
            feats = torch.cat([net.features(x[i : i + 512].to(dev)).cpu() for i in range(0, len(x), 512)])
        net.fit_features(feats.numpy(), np.array(ys), seed=cfg.seed)
        steps_done = 1
        if progress:
            progress(1, 1)
    elif getattr(net, "trained_on_real_only", False):
        steps_done = _train_on_real_only(net, train, val, val_x, val_y, P, aug, rng, cfg, dev, history, log, progress)
    else:
        opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=max(cfg.steps, 2), pct_start=0.1)
        real_idx = np.flatnonzero(train.labels == 0)
        fake_idx = np.flatnonzero(train.labels == 1)
        pairs = aligned_pairs(train) if cfg.paired else []
        if cfg.paired and not pairs:
            raise TrainingError("paired training needs real photos and reconstructions that share groups; found none")
        n_pairs = min(cfg.batch // 2, round(cfg.batch * cfg.pair_share / 2)) if pairs else 0
        if pairs:
            log(f"{len(pairs)} aligned pairs; {2 * n_pairs} of each batch of {cfg.batch} drawn as pairs")
        stopper = _EarlyStop(cfg.patience)
        steps_done = 0
        for step in range(1, cfg.steps + 1):
            net.train()
            rest = cfg.batch - 2 * n_pairs
            half = rest // 2
            idx = np.concatenate([rng.choice(real_idx, half), rng.choice(fake_idx, rest - half)]).astype(int)
            xb, yb = _batch(train, idx, P, aug, rng, cfg.hflip, margin)
            if n_pairs:
                xp, yp = _pair_batch(train, pairs, n_pairs, P, aug, rng, cfg.hflip, margin)
                xb, yb = np.concatenate([xb, xp]), np.concatenate([yb, yp])
            x = torch.from_numpy(xb).to(dev).permute(0, 3, 1, 2).float() / 255.0
            y = torch.from_numpy(yb).to(dev).float()
            loss = F.binary_cross_entropy_with_logits(net(x), y)
            _optimizer_step(loss, opt, sched, step)
            steps_done = step
            if progress:
                progress(step, cfg.steps)
            if step % cfg.eval_every == 0 or step == cfg.steps:
                z = det.logits(val_x)
                vloss = float(F.binary_cross_entropy_with_logits(torch.from_numpy(z), torch.from_numpy(val_y).float()))
                vauc = roc_auc(val_y, z)
                history.append({"step": step, "train_loss": loss.item(), "val_loss": vloss, "val_auc": vauc})
                if stopper.stop(vloss, net):
                    log(f"early stop at step {step}: validation loss did not improve for {stopper.bad} evaluations")
                    break
        stopper.restore(net)

    reference = None
    if getattr(net, "trained_on_real_only", False):
        from .zeroshot import fit_real_reference

        # a zero-shot statistic is thresholded at a false-positive rate on real photos, not calibrated
        reference = fit_real_reference(net, val_x[val_y == 0])
    z_val = det.logits(val_x)
    det.calibration = fit_calibration(z_val, val_y, "none" if reference is not None else cfg.calibration)
    det.preprocess = cfg.reencode  # inputs at scoring time take the same codec path as training
    p_raw, p_cal = apply_calibration(None, z_val), apply_calibration(det.calibration, z_val)
    metrics = {
        "val_auc": _auc_or_none(val_y, z_val),
        "val_ece_uncalibrated": ece(val_y, p_raw),
        "val_ece_calibrated_on_val": ece(val_y, p_cal),
        "steps": steps_done,
        "format_guard": guard,
        "n_train": {"real": len(tr_real.images), "generated": len(tr_fake.images)},
        "n_val": {"real": len(va_real.images), "generated": len(va_fake.images)},
        "generated_families": sorted(set(tr_fake.families)),
    }
    if reference is not None:
        metrics["real_reference"] = reference
        metrics["generated_families"] = []  # trained on real photographs only
    cfg_dict = asdict(cfg)
    det.card = {"training": cfg_dict, "metrics": metrics, "history": history}
    return TrainResult(det, history, metrics, time.time() - t0)
