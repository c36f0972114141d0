"""Sample-quality metrics on feature vectors: plain functions, plus one evaluation driver.

- :func:`frechet_distance` (FID when the features are Inception's; Heusel et al. 2017),
- :func:`kid` (unbiased MMD^2 with the cubic polynomial kernel; Binkowski et al. 2018),
- :func:`precision_recall` (k-NN manifolds; Kynkaanniemi et al. 2019),
- :func:`density_coverage` (Naeem et al. 2020),
- :func:`mode_coverage` and class accuracy from a classifier's predictions.

A number without its feature network, N and reference set means little, so
:func:`evaluate_generator` returns all three next to every metric.

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> a, b = rng.normal(size=(500, 4)), rng.normal(size=(500, 4))
>>> abs(fid_from_features(a, a)) < 1e-9
True
>>> fid_from_features(a, b + 3) > 30
True
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from .base import GeneratorError, image_seed


def feature_stats(f: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    f = np.asarray(f, dtype=np.float64)
    if f.ndim != 2 or f.shape[0] < 2:
        raise GeneratorError(f"need at least 2 feature vectors, got shape {f.shape}")
    return f.mean(0), np.cov(f, rowvar=False)


def _sqrtm_psd(a: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh((a + a.T) / 2)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """||mu1 - mu2||^2 + tr(S1 + S2 - 2 (S1 S2)^(1/2)).

    tr((S1 S2)^(1/2)) is computed as the trace of (S1^(1/2) S2 S1^(1/2))^(1/2), whose
    eigenvalues are real and non-negative -- no complex sqrtm, no ad-hoc epsilon.
    """
    mu1, mu2 = np.atleast_1d(mu1), np.atleast_1d(mu2)
    s1, s2 = np.atleast_2d(sigma1), np.atleast_2d(sigma2)
    if mu1.shape != mu2.shape or s1.shape != s2.shape:
        raise GeneratorError("feature statistics have different dimensions")
    r1 = _sqrtm_psd(s1)
    ev = np.linalg.eigvalsh(r1 @ s2 @ r1)
    tr_covmean = np.sqrt(np.clip(ev, 0, None)).sum()
    d = mu1 - mu2
    return float(d @ d + np.trace(s1) + np.trace(s2) - 2 * tr_covmean)


def fid_from_features(f1: np.ndarray, f2: np.ndarray) -> float:
    return frechet_distance(*feature_stats(f1), *feature_stats(f2))


def kid(f1: np.ndarray, f2: np.ndarray, *, subsets: int = 10, subset_size: int = 1000, seed: int = 0) -> tuple[float, float]:
    """Mean and std over random subsets of the unbiased MMD^2 with k(x,y) = (x.y/d + 1)^3."""
    f1, f2 = np.asarray(f1, np.float64), np.asarray(f2, np.float64)
    m = min(subset_size, len(f1), len(f2))
    if m < 2:
        raise GeneratorError("KID needs at least 2 samples per set")
    d = f1.shape[1]
    rng = np.random.default_rng(seed)
    vals = []
    for _ in range(subsets):
        x = f1[rng.choice(len(f1), m, replace=False)]
        y = f2[rng.choice(len(f2), m, replace=False)]
        kxx = (x @ x.T / d + 1) ** 3
        kyy = (y @ y.T / d + 1) ** 3
        kxy = (x @ y.T / d + 1) ** 3
        mmd = ((kxx.sum() - np.trace(kxx)) + (kyy.sum() - np.trace(kyy))) / (m * (m - 1)) - 2 * kxy.mean()
        vals.append(mmd)
    return float(np.mean(vals)), float(np.std(vals))


def _dists(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return torch.cdist(torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64)).numpy()


def _kth_radius(f: np.ndarray, k: int) -> np.ndarray:
    d = _dists(f, f)
    return np.sort(d, axis=1)[:, k]  # column 0 is the point itself


def precision_recall(real: np.ndarray, fake: np.ndarray, k: int = 3) -> tuple[float, float]:
    """Precision: share of fakes inside the real k-NN manifold; recall: the converse."""
    if min(len(real), len(fake)) <= k:
        raise GeneratorError(f"precision/recall needs more than k={k} samples per set")
    rr, rf = _kth_radius(real, k), _kth_radius(fake, k)
    d = _dists(real, fake)  # (R, F)
    precision = float((d <= rr[:, None]).any(0).mean())
    recall = float((d <= rf[None, :]).any(1).mean())
    return precision, recall


def density_coverage(real: np.ndarray, fake: np.ndarray, k: int = 5) -> tuple[float, float]:
    if min(len(real), len(fake)) <= k:
        raise GeneratorError(f"density/coverage needs more than k={k} samples per set")
    rr = _kth_radius(real, k)
    d = _dists(real, fake)
    inside = d <= rr[:, None]
    density = float(inside.sum() / (k * len(fake)))
    coverage = float((d.min(1) <= rr).mean())
    return density, coverage


def mode_coverage(pred: np.ndarray, num_classes: int, min_share: float = 0.0) -> dict[str, Any]:
    """Share of the ``num_classes`` classes the classifier finds among the samples
    (a class counts when it gets more than ``min_share`` of them)."""
    pred = np.asarray(pred)
    hist = np.bincount(pred, minlength=num_classes)[:num_classes]
    covered = int((hist > min_share * len(pred)).sum())
    return {"classes_covered": covered, "num_classes": num_classes, "mode_coverage": covered / num_classes,
            "class_histogram": hist.tolist()}


def compare_features(real: np.ndarray, fake: np.ndarray, *, kid_subset: int | None = None,
                     seed: int = 0) -> dict[str, float]:
    """All set-level metrics. KID subsets default to min(1000, N/2) so its std means something."""
    if kid_subset is None:
        kid_subset = max(2, min(1000, len(real) // 2, len(fake) // 2))
    km, ks = kid(real, fake, subset_size=kid_subset, seed=seed)
    p, r = precision_recall(real, fake)
    de, co = density_coverage(real, fake)
    return {"fid": fid_from_features(real, fake), "kid": km, "kid_std": ks, "precision": p, "recall": r,
            "density": de, "coverage": co}


# --------------------------------------------------------------------------- driver


def reference_images(source: str, *, split: str = "test", n: int = 500, seed: int = 0, image_size: int = 32):
    from .training import load_data

    td = load_data(source, image_size=image_size, n=n, seed=seed, split=split)
    return td.images.permute(0, 2, 3, 1).numpy(), (td.class_ids.numpy() if td.class_ids is not None else None)


def sample_images(model, n: int, *, seed: int = 1234, batch: int = 64, **sampler) -> tuple[np.ndarray, list]:
    from .sampling import generate_images

    imgs, classes = [], []
    for _, img, _, c in generate_images(model, n, seed=seed, batch=batch, **sampler):
        imgs.append(img)
        classes.append(c)
    return np.stack(imgs), classes


def evaluate_generator(lg, *, ref: str | None = None, ref_split: str = "test", n: int = 500, seed: int = 1234,
                       features: str = "toolkit", inception_weights: str | Path | None = None,
                       device: str = "auto", images: np.ndarray | None = None, with_baselines: bool = False,
                       **sampler) -> dict[str, Any]:
    """Sample ``n`` images from a loaded generator and compare them with the reference split,
    at the size the model outputs. ``with_baselines``: the same metrics for two trivial sets at
    the same N -- Gaussian-blurred (sigma 1.5) real *train* crops and uniform noise -- so a
    number has something to be read against."""
    from .features import ToolkitFeatures, get_feature_extractor
    from .sampling import sampler_settings

    g = lg.model
    ref = ref or lg.card.get("data", {}).get("source")
    if not ref:
        raise GeneratorError("no --ref given and the model card names no training source")
    settings = sampler_settings(g, **sampler)
    ext = get_feature_extractor(features, inception_weights=inception_weights, device=device)
    size = output_size(g, settings)
    real, real_cls = reference_images(ref, split=ref_split, n=n, image_size=size)
    if images is None:
        images, classes = sample_images(g, n, seed=seed, **settings)
    else:
        classes = [None] * len(images)
    fr, ff = ext.features(real), ext.features(images)
    metrics: dict[str, Any] = compare_features(fr, ff)
    baselines = None
    if with_baselines:
        baselines = trivial_baselines(ref, fr, ext, n=len(images), image_size=size, seed=seed)
    if isinstance(ext, ToolkitFeatures) and real_cls is not None and ref == "builtin-digits":
        pred = ext.classify_digits(images)
        mc = mode_coverage(pred, 10, min_share=0.01)
        metrics["mode_coverage"] = mc["mode_coverage"]
        metrics["class_histogram"] = mc["class_histogram"]
        if g.num_classes:
            metrics["class_accuracy"] = float(np.mean(pred == np.asarray(classes)))
    return {
        "model": lg.name, "family": g.family, "checkpoint_sha256": lg.sha256,
        "sampler": settings, "seed": seed, "seed_rule": "image_seed(seed, i)",
        "n_generated": int(len(images)), "n_reference": int(len(real)),
        "reference": f"{ref} split={ref_split}", "image_size": size, "feature_network": ext.record(),
        "metrics": metrics, **({"baselines": baselines} if baselines is not None else {}),
    }


def output_size(model, settings: dict[str, Any]) -> int:
    """The side of the images ``model`` makes with ``settings`` (image-to-image: input size x scale)."""
    if getattr(model, "image_to_image", False):
        return int(settings.get("size", model.image_size)) * int(getattr(model, "output_scale", 1))
    return int(model.image_size)


def trivial_baselines(ref: str, ref_features: np.ndarray, ext, *, n: int, image_size: int,
                      seed: int = 0) -> dict[str, dict[str, float]]:
    """Metrics of blurred real train crops and of uniform noise against the reference features."""
    import cv2

    train, _ = reference_images(ref, split="train", n=n, seed=seed + 1, image_size=image_size)
    blurred = np.stack([cv2.GaussianBlur(im, (0, 0), 1.5) for im in train])
    noise = np.random.default_rng(seed).integers(0, 256, size=(len(train), image_size, image_size, 3), dtype=np.uint8)
    return {name: compare_features(ref_features, ext.features(imgs))
            for name, imgs in (("blurred real train", blurred), ("uniform noise", noise))}


__all__ = [
    "compare_features",
    "density_coverage",
    "evaluate_generator",
    "feature_stats",
    "fid_from_features",
    "frechet_distance",
    "image_seed",
    "kid",
    "mode_coverage",
    "output_size",
    "precision_recall",
    "reference_images",
    "sample_images",
    "trivial_baselines",
]
