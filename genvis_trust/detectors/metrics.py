"""Detection metrics the field reports, as plain functions of (labels, scores).

``labels``: 1 = generated, 0 = real. ``scores``: higher = more likely generated
(probabilities for ECE and accuracy, any monotone score for the ranking metrics).
AUC and AP come from scikit-learn; EER, TPR at a fixed FPR and ECE are defined here.

>>> y = [0, 0, 1, 1]; s = [0.1, 0.4, 0.35, 0.8]
>>> round(roc_auc(y, s), 3), round(eer(y, s), 3)
(0.75, 0.5)
"""

from __future__ import annotations

from typing import Any

import numpy as np


def _arrays(labels, scores) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(labels, dtype=np.int64).ravel()
    s = np.asarray(scores, dtype=np.float64).ravel()
    if y.shape != s.shape:
        raise ValueError(f"labels and scores differ in length: {y.shape} vs {s.shape}")
    if not np.isin(y, (0, 1)).all():
        raise ValueError("labels must be 0 (real) or 1 (generated)")
    return y, s


def _both_classes(y: np.ndarray) -> bool:
    return bool(y.min(initial=1) == 0 and y.max(initial=0) == 1)


def roc_auc(labels, scores) -> float:
    y, s = _arrays(labels, scores)
    from sklearn.metrics import (
        roc_auc_score,  # here, not at import: scoring never needs scikit-learn
    )

    return float(roc_auc_score(y, s)) if _both_classes(y) else float("nan")


def average_precision(labels, scores) -> float:
    y, s = _arrays(labels, scores)
    from sklearn.metrics import average_precision_score

    return float(average_precision_score(y, s)) if _both_classes(y) else float("nan")


def accuracy(labels, probs, threshold: float = 0.5) -> dict[str, float]:
    """Overall, real-class and generated-class accuracy at ``threshold``."""
    y, p = _arrays(labels, probs)
    pred = (p >= threshold).astype(np.int64)
    real, fake = y == 0, y == 1
    return {
        "acc": float((pred == y).mean()) if y.size else float("nan"),
        "real_acc": float((pred[real] == 0).mean()) if real.any() else float("nan"),
        "fake_acc": float((pred[fake] == 1).mean()) if fake.any() else float("nan"),
    }


def eer(labels, scores) -> float:
    """Equal error rate: where the false-positive and false-negative rates cross."""
    y, s = _arrays(labels, scores)
    if not _both_classes(y):
        return float("nan")
    from sklearn.metrics import roc_curve

    fpr, tpr, _ = roc_curve(y, s)
    fnr = 1.0 - tpr
    i = int(np.nanargmin(np.abs(fnr - fpr)))
    # interpolate between the two ROC points around the crossing
    if i + 1 < len(fpr) and (fnr[i] - fpr[i]) * (fnr[i + 1] - fpr[i + 1]) < 0:
        d0, d1 = fnr[i] - fpr[i], fnr[i + 1] - fpr[i + 1]
        t = d0 / (d0 - d1)
        return float(fpr[i] + t * (fpr[i + 1] - fpr[i]))
    return float((fpr[i] + fnr[i]) / 2.0)


def tpr_at_fpr(labels, scores, max_fpr: float = 0.01) -> float:
    """Highest true-positive rate reachable with a false-positive rate <= ``max_fpr``."""
    y, s = _arrays(labels, scores)
    if not _both_classes(y):
        return float("nan")
    from sklearn.metrics import roc_curve

    fpr, tpr, _ = roc_curve(y, s)
    ok = fpr <= max_fpr + 1e-12
    return float(tpr[ok].max()) if ok.any() else 0.0


def reliability(labels, probs, n_bins: int = 15) -> dict[str, Any]:
    """Equal-width bins of p(generated): mean predicted, observed rate and count per bin."""
    y, p = _arrays(labels, probs)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    idx = np.clip(np.digitize(p, edges[1:-1], right=True), 0, n_bins - 1)
    conf, freq, count = [], [], []
    for b in range(n_bins):
        m = idx == b
        count.append(int(m.sum()))
        conf.append(float(p[m].mean()) if m.any() else float("nan"))
        freq.append(float(y[m].mean()) if m.any() else float("nan"))
    return {"edges": edges.tolist(), "mean_predicted": conf, "observed": freq, "count": count}


def ece(labels, probs, n_bins: int = 15) -> float:
    """Expected calibration error of p(generated) over equal-width bins (weighted |gap|)."""
    y, p = _arrays(labels, probs)
    if y.size == 0:
        return float("nan")
    r = reliability(y, p, n_bins)
    total = 0.0
    for c, f, n in zip(r["mean_predicted"], r["observed"], r["count"], strict=True):
        if n:
            total += n * abs(c - f)
    return float(total / y.size)


def detection_report(labels, probs, *, threshold: float = 0.5, max_fpr: float = 0.01) -> dict[str, float]:
    """Every headline number for one set of (label, calibrated probability) pairs."""
    y, p = _arrays(labels, probs)
    return {
        "n": int(y.size),
        "n_real": int((y == 0).sum()),
        "n_generated": int((y == 1).sum()),
        **accuracy(y, p, threshold),
        "auc": roc_auc(y, p),
        "ap": average_precision(y, p),
        "eer": eer(y, p),
        f"tpr_at_{max_fpr:g}_fpr": tpr_at_fpr(y, p, max_fpr),
        "fpr": float((p[y == 0] >= threshold).mean()) if (y == 0).any() else float("nan"),
        "ece": ece(y, p),
    }
