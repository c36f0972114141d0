"""Quality metrics: formulas against independent computations, feature-network loading paths."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch

from genvis_trust.generators import GeneratorError
from genvis_trust.generators.features import FEATURES_ASSET, InceptionFeatures, ToolkitFeatures
from genvis_trust.generators.metrics import (
    density_coverage,
    fid_from_features,
    frechet_distance,
    kid,
    mode_coverage,
    precision_recall,
    reference_images,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def _scipy_frechet(mu1, s1, mu2, s2):
    covmean = scipy.linalg.sqrtm(s1 @ s2)
    covmean = covmean.real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def test_frechet_distance_matches_scipy_sqrtm():
    rng = np.random.default_rng(0)
    for d in (1, 3, 8):
        a = rng.normal(size=(d, d))
        b = rng.normal(size=(d, d))
        s1, s2 = a @ a.T + 0.1 * np.eye(d), b @ b.T + 0.1 * np.eye(d)
        mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
        assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(_scipy_frechet(mu1, s1, mu2, s2), rel=1e-6, abs=1e-8)


def test_frechet_distance_closed_forms():
    # 1-D Gaussians: (m1 - m2)^2 + (sd1 - sd2)^2
    assert frechet_distance([0.0], [[4.0]], [3.0], [[1.0]]) == pytest.approx(9 + 1)
    # same statistics: zero; rank-deficient covariances are fine
    s = np.diag([1.0, 0.0, 2.0])
    assert frechet_distance(np.zeros(3), s, np.zeros(3), s) == pytest.approx(0, abs=1e-9)
    with pytest.raises(GeneratorError):
        frechet_distance(np.zeros(2), np.eye(2), np.zeros(3), np.eye(3))


def test_fid_from_features_orders_by_distance():
    rng = np.random.default_rng(1)
    ref = rng.normal(size=(400, 5))
    near, far = rng.normal(size=(400, 5)) + 0.2, rng.normal(size=(400, 5)) + 2.0
    assert fid_from_features(ref, near) < fid_from_features(ref, far)


def _kid_brute(x, y):
    d = x.shape[1]

    def k(a, b):
        return (a @ b / d + 1) ** 3

    m = len(x)
    sxx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    syy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    sxy = sum(k(x[i], y[j]) for i in range(m) for j in range(m)) / (m * m)
    return sxx + syy - 2 * sxy


def test_kid_is_the_unbiased_polynomial_mmd():
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(12, 3)), rng.normal(size=(12, 3)) + 0.5
    mean, std = kid(x, y, subsets=1, subset_size=12)
    assert mean == pytest.approx(_kid_brute(x, y)) and std == 0
    # unbiased: two samples of one distribution give ~0 on average (can be negative)
    a, b = rng.normal(size=(600, 4)), rng.normal(size=(600, 4))
    m, s = kid(a, b, subsets=20, subset_size=200)
    assert abs(m) < 3 * s + 1e-3
    assert kid(a, b + 1.0, subsets=5, subset_size=200)[0] > 0.1


def test_precision_recall_and_density_coverage():
    rng = np.random.default_rng(3)
    real = rng.normal(size=(300, 2))
    assert precision_recall(real, real.copy()) == (1.0, 1.0)
    p, r = precision_recall(real, real + 50)
    assert p == 0.0 and r == 0.0
    # fakes collapsed on one corner of the real data: precise, but poor recall and coverage
    collapsed = real[real[:, 0] > 1.0][:50]
    p, r = precision_recall(real, collapsed)
    d, c = density_coverage(real, collapsed)
    assert p > 0.9 and r < 0.5 and c < 0.5
    d_same, c_same = density_coverage(real, real.copy())
    assert c_same == 1.0 and 0.8 < d_same < 1.3


def test_mode_coverage():
    mc = mode_coverage(np.array([0, 0, 1, 1, 1, 3]), 4)
    assert mc["classes_covered"] == 3 and mc["mode_coverage"] == 0.75
    assert mc["class_histogram"] == [2, 3, 0, 1]
    assert mode_coverage(np.array([0] * 99 + [1]), 2, min_share=0.05)["classes_covered"] == 1


@pytest.mark.parametrize("fmt", ["pth", "safetensors"])
def test_inception_loading_path_with_random_weights(tmp_path, fmt):
    """The real FID weights cannot be downloaded offline: a randomly initialised state dict of
    the same (torchvision) format exercises the loading path, including the 1008-class
    pt_inception variant's fc."""
    from safetensors.torch import save_file
    from torchvision.models import Inception3

    torch.manual_seed(0)
    net = Inception3(num_classes=1008, aux_logits=True, init_weights=False)
    state = net.state_dict()
    path = tmp_path / f"inception.{fmt}"
    if fmt == "pth":
        torch.save(state, path)  # a fixture in the user's format; loading uses weights_only=True
    else:
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    ext = InceptionFeatures(path, device="cpu", resize=299)
    imgs = np.random.default_rng(0).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    f = ext.features(imgs)
    assert f.shape == (2, 2048) and np.isfinite(f).all()
    assert ext.fid_style and "pt_inception" in ext.record()["description"]


def test_inception_loading_errors_are_clear(tmp_path):
    with pytest.raises(GeneratorError, match="not found"):
        InceptionFeatures(tmp_path / "missing.pth")
    bad = tmp_path / "bad.pth"
    torch.save({"conv.weight": torch.zeros(1)}, bad)
    with pytest.raises(GeneratorError, match="no 'fc.weight'"):
        InceptionFeatures(bad)
    pickled = tmp_path / "pickled.pth"
    torch.save({"fc.weight": object()}, pickled)
    with pytest.raises(GeneratorError, match="weights-only"):
        InceptionFeatures(pickled)


@pytest.mark.skipif(not (FEATURES_ASSET / "model.safetensors").is_file(), reason="feature net not bundled")
def test_toolkit_feature_net_classifies_held_out_digits():
    ext = ToolkitFeatures(device="cpu")
    imgs, cls = reference_images("builtin-digits", split="test", n=270)
    acc = float((ext.classify_digits(imgs) == cls).mean())
    assert acc >= 0.9
    assert ext.features(imgs[:4]).shape == (4, 128)
    assert ext.record()["name"] == "gvt-features-v1"
