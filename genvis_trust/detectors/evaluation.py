"""Evaluate a detector the way the field reports it.

- headline metrics at the calibrated threshold (0.5): acc, real-acc, fake-acc, AP, AUC,
  EER, TPR at 1% FPR, ECE, plus the false-positive rate on real images;
- a per-generator breakdown (each generated family against all real images);
- robustness sweeps: the same test images through the shared perturbations;
- an "uncertain" outcome: an image whose calibrated verdict flips under mild
  perturbations (JPEG 90, 0.9x resize, light blur) is uncertain, not real or generated.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from genvis_trust.datasets.base import Source
from genvis_trust.datasets.perturbations import apply_batch, create_perturbation

from .calibration import apply_calibration
from .detector import Detector
from .metrics import detection_report
from .training import collect, merge

MILD_PERTURBATIONS = {
    "jpeg_90": create_perturbation("jpeg", quality=90),
    "resize_0.9": create_perturbation("resize_back", factor=0.9),
    "blur_0.5": create_perturbation("gaussian_blur", sigma=0.5),
}


@dataclass
class EvalSet:
    """Test images held in memory with labels and the generator family of each."""

    images: list[np.ndarray]
    labels: np.ndarray
    families: list[str]

    @classmethod
    def from_sources(cls, real: Sequence[Source], fake: Sequence[Source], limit: int = 5000) -> EvalSet:
        d = merge(collect(real, 0, limit=limit, family_default="real"), collect(fake, 1, limit=limit, family_default="generated"))
        return cls(d.images, d.labels, d.families)


def logits(det: Detector, images: list[np.ndarray]) -> np.ndarray:
    """Aggregated raw logits: patch-sized images directly, larger ones tiled (mean logit)."""
    if images and all(im.shape[:2] == (det.patch, det.patch) for im in images):
        return det.logits(np.stack([det.prepare(im) for im in images]))
    return np.array([s.logit for s in det.score_many(images)])


def scores(det: Detector, images: list[np.ndarray]) -> np.ndarray:
    """Calibrated p(generated) of each image."""
    return det.probabilities(logits(det, images))


def report(det: Detector, labels: np.ndarray, z: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    """Ranking metrics (AUC, AP, EER, TPR@FPR) from logits, so a steep calibration cannot create
    ties; accuracy, FPR and ECE from the calibrated probabilities."""
    p = det.probabilities(z)
    ranked = detection_report(labels, z, threshold=float("inf"))
    out = detection_report(labels, p, threshold=threshold)
    for k in ("auc", "ap", "eer", "tpr_at_0.01_fpr"):
        out[k] = ranked[k]
    return out


def evaluate(det: Detector, data: EvalSet, *, threshold: float = 0.5) -> dict[str, Any]:
    z = logits(det, data.images)
    out: dict[str, Any] = {"overall": report(det, data.labels, z, threshold), "per_generator": {}}
    real = data.labels == 0
    fams = np.array([str(f) for f in data.families])
    for fam in sorted(set(fams[~real])):
        m = real | (fams == fam)
        out["per_generator"][fam] = report(det, data.labels[m], z[m], threshold)
    out["probabilities"] = det.probabilities(z)
    return out


def robustness(det: Detector, data: EvalSet, suite: Mapping[str, Any], *, seed: int = 0) -> dict[str, dict[str, float]]:
    """Metrics after each perturbation of the suite, applied to every test image."""
    res = {}
    for name, pert in suite.items():
        imgs = apply_batch(list(data.images), pert, seed=seed)
        res[name] = report(det, data.labels, logits(det, imgs))
    return res


@dataclass
class StabilityVerdict:
    probability: float
    perturbed: dict[str, float] = field(default_factory=dict)
    uncertain: bool = False
    not_scored: list[str] = field(default_factory=list)  # copies left unscored once one had flipped
    # sequential check: per copy, (tiles scored, tiles in the image); fewer means its p is an estimate
    tiles: dict[str, tuple[int, int]] = field(default_factory=dict)

    @property
    def spread(self) -> float:
        vals = [self.probability, *self.perturbed.values()]
        return float(max(vals) - min(vals))

    @property
    def estimated(self) -> bool:
        """Whether any copy's p was estimated from part of its tiles (:func:`sequential_copy_score`)."""
        return any(k < n for k, n in self.tiles.values())


# The sequential check (see :func:`sequential_copy_score`): tiles scored per step, and how many
# standard errors the estimate of a copy's mean logit must stay clear of the threshold to stop.
SEQUENTIAL_CHUNK = 16
SEQUENTIAL_SIGMAS = 4.0


def _sample_order(n: int) -> np.ndarray:
    """The order in which a copy's ``n`` tiles are read: a fixed pseudo-random permutation
    (seed 0), so every prefix is a simple random sample of the tiles (what the standard error
    of :func:`sequential_copy_score` assumes) and the same image is always read the same way."""
    return np.random.default_rng(0).permutation(n)


def sequential_copy_score(det: Detector, copy: np.ndarray, base: Any, *, threshold: float = 0.5,
                          batch_size: int = 256, chunk: int = SEQUENTIAL_CHUNK,
                          sigmas: float = SEQUENTIAL_SIGMAS) -> tuple[float, int, int]:
    """p(generated) of a perturbed ``copy`` of an image whose own score is ``base`` (its
    :class:`~.detector.DetectionScore`, with tile logits), scoring the copy's tiles ``chunk``
    at a time and stopping once its side of ``threshold`` is clear. Returns ``(p, tiles
    scored, tiles)``; with every tile scored, ``p`` is exactly what :meth:`Detector.score`
    gives the copy.

    A mild perturbation keeps the image's size, so the copy's tiles sit where the original's
    do and the copy's mean logit is the original's plus the mean per-tile change. After ``k``
    of ``n`` tiles (a fixed pseudo-random sample, :func:`_sample_order`) that change is
    estimated from the ``k`` paired differences, with the standard error of a sample drawn
    without replacement (``sd / sqrt(k) * sqrt((n - k) / n)``; a zero or undefined one never
    stops the reading). The check stops when the calibrated p at the
    estimate plus and minus ``sigmas`` standard errors lies on one side of ``threshold``;
    otherwise it scores the next ``chunk`` tiles, up to all of them. Where the copy is read
    by another domain head than the original (or its tiles are placed otherwise) the tiles
    are not paired and the copy's own tile logits are the sample."""
    tiles, positions, grid, notes = det.inputs(copy)
    ood = det.domain_check(copy)
    n = len(tiles)
    order = _sample_order(n)
    z_all = np.zeros(n, np.float32)
    m_all: np.ndarray | None = None
    z_base = None if base is None or base.tile_logits is None else np.asarray(base.tile_logits, np.float64)
    paired_positions = (z_base is not None and len(z_base) == n
                        and [tuple(p) for p in (base.tile_positions or [])] == [tuple(p) for p in positions])
    for start in range(0, n, chunk):
        idx = np.sort(order[start : start + chunk])  # in image order within a step, as score_many batches them
        z, m = det.logits(tiles[idx], batch_size, members=True)
        z_all[idx] = z
        if m is not None:
            if m_all is None:
                m_all = np.zeros((n, m.shape[1]), np.float32)
            m_all[idx] = m
        k = start + len(idx)
        sub = np.sort(order[:k])
        s = det.aggregate(z_all[sub], tiles[sub], [positions[i] for i in sub], grid, list(notes), ood,
                          members=None if m_all is None else m_all[sub])
        if k == n:
            return float(s.probability), n, n
        zt = np.asarray(s.tile_logits, np.float64)
        if paired_positions and s.head == base.head:
            d = zt - z_base[sub]
            est = float(z_base.mean() + d.mean())
        else:
            d = zt
            est = float(zt.mean())
        if k < 2:
            continue
        # standard error of a mean of k drawn without replacement from n
        se = float(d.std(ddof=1)) / np.sqrt(k) * np.sqrt((n - k) / n)
        if not np.isfinite(se) or se <= 0.0:  # k equal changes say nothing of the tiles not read
            continue
        cal = det.calibration_for(s.head)
        lo, mid, hi = (float(v) for v in apply_calibration(cal, np.array([est - sigmas * se, est, est + sigmas * se])))
        if (lo >= threshold) == (hi >= threshold):
            return mid, k, n
    raise AssertionError("unreachable: the last chunk scores every tile")


def stability(det: Detector, image: np.ndarray, *, threshold: float = 0.5, score: float | None = None,
              batch_size: int = 256, stop_at_flip: bool = False, base: Any = None) -> StabilityVerdict:
    """Score ``image`` and its mildly perturbed copies; uncertain when the verdict flips.

    ``score``: the image's own p(generated) when the caller already has it (the scan engine
    does), so only the perturbed copies go through the network. ``batch_size``: the scan
    passes its engine's, so the network runs batches of a shape it has already run.
    ``stop_at_flip`` (needs ``score``): score the copies one at a time and stop at the first
    one on the other side of ``threshold``: the answer (uncertain) is then known, and the
    copies left are named in ``not_scored``. ``base`` (the image's own
    :class:`~.detector.DetectionScore`, with tile logits; implies ``stop_at_flip``): score each
    copy sequentially (:func:`sequential_copy_score`), stopping once its side of the threshold
    is clear, in steps of at least ``batch_size`` tiles (so where batches are large, as on a
    GPU, each copy is read whole in one pass); ``tiles`` says how many of each copy's tiles
    were read."""
    if base is not None:
        score = base.probability if score is None else score
        stop_at_flip = True
    if score is None:
        perturbed = [p(image) for p in MILD_PERTURBATIONS.values()]
        s = [x.probability for x in det.score_many([image] + perturbed, batch_size)]
        sides = {v >= threshold for v in s}
        return StabilityVerdict(s[0], dict(zip(MILD_PERTURBATIONS, s[1:], strict=True)), uncertain=len(sides) > 1)
    base_p = float(score)
    if not stop_at_flip:
        perturbed = [p(image) for p in MILD_PERTURBATIONS.values()]
        s = [x.probability for x in det.score_many(perturbed, batch_size)]
        return StabilityVerdict(base_p, dict(zip(MILD_PERTURBATIONS, s, strict=True)),
                                uncertain=any((v >= threshold) != (base_p >= threshold) for v in s))
    got: dict[str, float] = {}
    read: dict[str, tuple[int, int]] = {}
    names = list(MILD_PERTURBATIONS)
    for k, name in enumerate(names):
        copy = MILD_PERTURBATIONS[name](image)
        if base is not None and not det.whole_image:
            # a step is at least one forward batch: on a GPU (batches of 1024) a copy is read whole in one pass
            v, used, n = sequential_copy_score(det, copy, base, threshold=threshold, batch_size=batch_size,
                                               chunk=max(SEQUENTIAL_CHUNK, batch_size))
            read[name] = (used, n)
        else:
            sc = det.score_many([copy], batch_size)[0]
            v = sc.probability
            if not det.whole_image:
                read[name] = (sc.tiles, sc.tiles)
        got[name] = v
        if (v >= threshold) != (base_p >= threshold):
            return StabilityVerdict(base_p, got, uncertain=True, not_scored=names[k + 1:], tiles=read)
    return StabilityVerdict(base_p, got, uncertain=False, tiles=read)

