"""Charts for reports: ROC curves, reliability diagrams, robustness curves, histograms.

Every function writes a PNG atomically and returns its path; matplotlib runs headless.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from genvis_trust.atomic import atomic_write_bytes  # noqa: E402


def _save(fig, path) -> Path:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
    return Path(path)


def roc_curves(path, curves: Mapping[str, tuple[Sequence[int], Sequence[float]]], title: str = "ROC") -> Path:
    """``curves``: name -> (labels, scores)."""
    from sklearn.metrics import roc_auc_score, roc_curve

    fig, ax = plt.subplots(figsize=(4.5, 4.2))
    for name, (y, s) in curves.items():
        if len(set(np.asarray(y).tolist())) < 2:
            continue
        fpr, tpr, _ = roc_curve(y, s)
        ax.plot(fpr, tpr, label=f"{name} (AUC {roc_auc_score(y, s):.3f})")
    ax.plot([0, 1], [0, 1], ":", color="grey")
    ax.set(xlabel="false-positive rate (real called generated)", ylabel="true-positive rate", title=title)
    ax.legend(fontsize=7, loc="lower right")
    return _save(fig, path)


def reliability_diagram(path, before: dict, after: dict | None = None, title: str = "Reliability") -> Path:
    """Inputs are ``metrics.reliability`` dicts (uncalibrated, calibrated)."""
    fig, ax = plt.subplots(figsize=(4.5, 4.2))
    ax.plot([0, 1], [0, 1], ":", color="grey", label="perfect")
    for name, r in (("uncalibrated", before), ("calibrated", after)):
        if r is None:
            continue
        m = np.array(r["count"]) > 0
        ax.plot(np.array(r["mean_predicted"])[m], np.array(r["observed"])[m], "o-", label=name)
    ax.set(xlabel="predicted p(generated)", ylabel="observed share generated", title=title, xlim=(0, 1), ylim=(0, 1))
    ax.legend(fontsize=8)
    return _save(fig, path)


def robustness_curves(path, table: Mapping[str, Mapping[str, float]], metric: str = "auc", title: str | None = None) -> Path:
    """``table``: perturbation name -> metrics dict; one bar per perturbation."""
    names = list(table)
    vals = [table[n].get(metric, np.nan) for n in names]
    fig, ax = plt.subplots(figsize=(max(4.5, 0.5 * len(names)), 3.6))
    ax.bar(range(len(names)), vals, color="#4c72b0")
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right", fontsize=8)
    ax.set(ylabel=metric, title=title or f"{metric} under perturbations", ylim=(0, 1.02))
    for i, v in enumerate(vals):
        ax.text(i, min(v, 0.98) if v == v else 0, f"{v:.2f}", ha="center", va="bottom", fontsize=7)
    return _save(fig, path)


def histogram(path, groups: Mapping[str, Sequence[float]], title: str, xlabel: str, bins: int = 20,
              colours: Mapping[str, str] | None = None) -> Path:
    """One panel per group on a shared x axis, each with its own count scale: overlaid
    histograms let a large class hide a small one."""
    names = [n for n, v in groups.items() if len(v)]
    if not names:
        names = list(groups)[:1] or ["none"]
    fig, axes = plt.subplots(len(names), 1, figsize=(5.5, 0.9 + 1.05 * len(names)), sharex=True, squeeze=False)
    edges = np.linspace(0, 1, bins + 1)
    for ax, name in zip(axes[:, 0], names, strict=True):
        v = np.asarray(groups.get(name, []), dtype=float)
        counts, _ = np.histogram(v, bins=edges)
        ax.bar(edges[:-1], counts, width=np.diff(edges), align="edge", edgecolor="white", linewidth=0.5,
               color=(colours or {}).get(name, "#4c72b0"))
        ax.set_ylim(0, max(1, counts.max()) * 1.15)
        ax.set_ylabel("images", fontsize=7)
        ax.tick_params(labelsize=7)
        ax.text(0.01, 0.93, f"{name} (n={len(v)})", transform=ax.transAxes, fontsize=8, va="top")
    axes[-1, 0].set_xlabel(xlabel)
    axes[-1, 0].set_xlim(0, 1)
    axes[0, 0].set_title(title, fontsize=10)
    return _save(fig, path)


def bar_counts(path, counts: Mapping[str, int], title: str) -> Path:
    fig, ax = plt.subplots(figsize=(5, 0.4 * max(3, len(counts)) + 1))
    names = list(counts)
    ax.barh(names, [counts[n] for n in names], color="#55a868")
    ax.set(title=title, xlabel="images")
    ax.invert_yaxis()
    return _save(fig, path)


def video_timeline(video: Mapping, threshold: float = 0.5, flags: list[str] | None = None) -> np.ndarray:
    """The frames a video scan examined, over time: the detector's p(generated) per frame
    (hollow: outside the detector's domain), the threshold, scene cuts (dotted) and the
    frames where a mark or record was found (red triangles); ``flags`` with ``tampered``
    (the record's) bands the chart red and says so in its title. An RGB array, for the reports."""
    frames = list(video.get("frames") or [])
    fig, ax = plt.subplots(figsize=(7, 2.4))
    t = np.array([f["time_s"] for f in frames], float)
    p = np.array([np.nan if f.get("probability") is None else f["probability"] for f in frames], float)
    if len(t):
        ax.plot(t, p, color="#4c72b0", lw=1, alpha=0.6)
        ood = np.array([bool(f.get("out_of_domain")) for f in frames])
        ax.scatter(t[~ood], p[~ood], s=18, color="#4c72b0", zorder=3, label="frame p(generated)")
        if ood.any():
            ax.scatter(t[ood], p[ood], s=18, facecolors="none", edgecolors="#4c72b0", zorder=3,
                       label="outside the detector's domain")
        for f in frames:
            if f.get("reason") == "scene_cut":
                ax.axvline(f["time_s"], color="grey", ls=":", lw=1)
        marked = [f["time_s"] for f in frames if any(e["kind"] != "detector" for e in f.get("evidence") or [])]
        if marked:
            ax.scatter(marked, [1.04] * len(marked), marker="v", color="#c44e52", s=30, zorder=4, clip_on=False,
                       label="mark or record found")
    ax.axhline(threshold, color="#dd8452", ls="--", lw=1, label=f"threshold {threshold:g}")
    end = video.get("duration_s") or (float(t.max()) if len(t) else 1.0)
    ax.set(xlim=(0, max(end, 1e-3)), ylim=(0, 1), xlabel="time (s)", ylabel="p(generated)")
    title = f"{len(frames)} frames examined (dotted: scene cuts)"
    if "tampered" in (flags or []):
        ax.axhspan(0, 1, color="#c0392b", alpha=0.08, zorder=0)
        ax.set_title("TAMPERED: the video's C2PA manifest is present but invalid\n" + title, fontsize=9, color="#c0392b")
    else:
        ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    from genvis_trust.io import decode_image

    return decode_image(buf.getvalue()).array
