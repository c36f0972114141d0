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

    @property
    def spread(self) -> float:
        vals = [self.probability, *self.perturbed.values()]
        return float(max(vals) - min(vals))


def stability(det: Detector, image: np.ndarray, *, threshold: float = 0.5, score: float | None = None,
              batch_size: int = 256, stop_at_flip: bool = False) -> StabilityVerdict:
    """Score ``image`` and its mildly perturbed copies; uncertain when the verdict flips.

    ``score``: the image's own p(generated) when the caller already has it (the scan engine
    does), so only the perturbed copies go through the network. ``batch_size``: the scan
    passes its engine's, so the network runs batches of a shape it has already run.
    ``stop_at_flip`` (needs ``score``): score the copies one at a time and stop at the first
    one on the other side of ``threshold``: the answer (uncertain) is then known, and the
    copies left are named in ``not_scored``."""
    if score is None:
        perturbed = [p(image) for p in MILD_PERTURBATIONS.values()]
        s = [x.probability for x in det.score_many([image] + perturbed, batch_size)]
        sides = {v >= threshold for v in s}
        return StabilityVerdict(s[0], dict(zip(MILD_PERTURBATIONS, s[1:], strict=True)), uncertain=len(sides) > 1)
    base = float(score)
    if not stop_at_flip:
        perturbed = [p(image) for p in MILD_PERTURBATIONS.values()]
        s = [x.probability for x in det.score_many(perturbed, batch_size)]
        return StabilityVerdict(base, dict(zip(MILD_PERTURBATIONS, s, strict=True)),
                                uncertain=any((v >= threshold) != (base >= threshold) for v in s))
    got: dict[str, float] = {}
    names = list(MILD_PERTURBATIONS)
    for k, name in enumerate(names):
        v = det.score_many([MILD_PERTURBATIONS[name](image)], batch_size)[0].probability
        got[name] = v
        if (v >= threshold) != (base >= threshold):
            return StabilityVerdict(base, got, uncertain=True, not_scored=names[k + 1:])
    return StabilityVerdict(base, got, uncertain=False)

