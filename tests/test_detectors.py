"""Detectors: registry-driven checks for every family, metrics against scikit-learn,
calibration, checkpoint import, tiling, explanations, the format guard and the CLI."""

from __future__ import annotations

import inspect

import cv2
import numpy as np
import pytest
import torch
from sklearn.metrics import accuracy_score, average_precision_score, roc_auc_score, roc_curve

from genvis_trust.datasets import MapDatasetSource
from genvis_trust.detectors import Detector, list_families, load_detector, tile_image
from genvis_trust.detectors.calibration import apply_calibration, fit_calibration
from genvis_trust.detectors.evaluation import EvalSet, evaluate, robustness, stability
from genvis_trust.detectors.importing import CheckpointImportError, import_checkpoint
from genvis_trust.detectors.metrics import (
    accuracy,
    average_precision,
    ece,
    eer,
    reliability,
    roc_auc,
    tpr_at_fpr,
)
from genvis_trust.detectors.training import (
    TrainConfig,
    TrainingError,
    collect,
    format_guard,
    train_detector,
)

RNG = np.random.default_rng(0)


def smooth_images(n: int, seed: int, size: int = 32) -> list[np.ndarray]:
    """'Real': smooth random colour fields with mild sensor-like noise."""
    r = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        small = r.integers(0, 256, (4, 4, 3)).astype(np.uint8)
        im = cv2.resize(small, (size, size), interpolation=cv2.INTER_CUBIC).astype(np.float32)
        im += r.normal(0, 4, im.shape)
        out.append(np.clip(im, 0, 255).astype(np.uint8))
    return out


def upsampled_images(n: int, seed: int, size: int = 32) -> list[np.ndarray]:
    """'Generated': the same kind of content, 2x nearest up-sampled (a checkerboard trace)."""
    out = []
    for im in smooth_images(n, seed + 1000, size):
        half = cv2.resize(im, (size // 2, size // 2), interpolation=cv2.INTER_AREA)
        out.append(cv2.resize(half, (size, size), interpolation=cv2.INTER_NEAREST))
    return out


def src(images, label, name):
    return MapDatasetSource([(im, 0) for im in images], label=label, name=name, split=None)


@pytest.fixture(scope="module")
def tiny_data():
    return {
        "real": src(smooth_images(96, 1), "real", "smooth"),
        "fake": src(upsampled_images(96, 2), "generated", "upsampled"),
        "real_val": src(smooth_images(48, 3), "real", "smooth"),
        "fake_val": src(upsampled_images(48, 4), "generated", "upsampled"),
    }


# ---------------------------------------------------------------- metrics vs scikit-learn


def test_metrics_match_sklearn():
    y = RNG.integers(0, 2, 300)
    s = np.clip(y * 0.3 + RNG.normal(0.4, 0.25, 300), 0, 1)
    assert roc_auc(y, s) == pytest.approx(roc_auc_score(y, s))
    assert average_precision(y, s) == pytest.approx(average_precision_score(y, s))
    assert accuracy(y, s)["acc"] == pytest.approx(accuracy_score(y, s >= 0.5))
    fpr, tpr, _ = roc_curve(y, s)
    assert tpr_at_fpr(y, s, 0.05) == pytest.approx(tpr[fpr <= 0.05].max())
    e = eer(y, s)
    i = np.argmin(np.abs((1 - tpr) - fpr))
    assert abs(e - fpr[i]) < 0.03 and abs(e - (1 - tpr[i])) < 0.03


def test_ece_against_direct_definition():
    y = np.array([0, 0, 1, 1, 1, 0])
    p = np.array([0.05, 0.1, 0.9, 0.95, 0.6, 0.55])
    # by hand, 15 equal bins: 0.55 and 0.6 share bin 8 (mean 0.575 vs observed 0.5); the rest
    # sit alone: |0.05-0|, |0.1-0|, |0.9-1|, |0.95-1|
    expected = (0.05 + 0.1 + 0.1 + 0.05 + 2 * 0.075) / 6
    assert ece(y, p, n_bins=15) == pytest.approx(expected)
    assert ece(y, np.where(y == 1, 1.0, 0.0)) == 0.0
    r = reliability(y, p, n_bins=2)
    assert r["count"] == [2, 4]


def test_metrics_refuse_bad_labels():
    with pytest.raises(ValueError):
        roc_auc([0, 2], [0.1, 0.2])
    assert np.isnan(roc_auc([1, 1], [0.1, 0.2]))


# ---------------------------------------------------------------- calibration


@pytest.mark.parametrize("method", ["temperature", "platt", "isotonic"])
def test_calibration_monotone_and_improves_ece(method):
    z = np.concatenate([RNG.normal(-1, 1, 400), RNG.normal(1, 1, 400)]) * 4.0  # overconfident
    y = np.r_[np.zeros(400), np.ones(400)]
    state = fit_calibration(z, y, method)
    grid = np.linspace(-20, 20, 201)
    p = apply_calibration(state, grid)
    assert np.all(np.diff(p) >= -1e-12)
    assert ece(y, apply_calibration(state, z)) < ece(y, apply_calibration(None, z))


def test_platt_never_flips_a_backwards_detector():
    z = np.r_[np.ones(50), -np.ones(50)] + RNG.normal(0, 0.1, 100)
    state = fit_calibration(z, np.r_[np.zeros(50), np.ones(50)], "platt")
    assert "no usable ranking" in state["warning"]
    np.testing.assert_allclose(apply_calibration(state, [-5.0, 0.0, 5.0]), 0.5)


# ---------------------------------------------------------------- every registered family


def whole_image_family(name: str) -> bool:
    """A family reproducing a published detector whose every instance reads whole images (NPR's
    class also serves as a tile member: ``whole_image`` is part of its config)."""
    cls = list_families()[name].cls
    return getattr(cls, "published", None) is not None and "whole_image" not in inspect.signature(cls.__init__).parameters


def _toolkit_sized(family: str) -> bool:
    """Families the toolkit trains at any tile size; not the published CLIP/ViT reproductions, whose
    architecture is fixed by their checkpoint and needs an optional package (tests/test_published_clip.py)."""
    card = getattr(list_families()[family].cls, "published", None)
    return not (card and card.requires)


@pytest.mark.parametrize("family", sorted(f for f in list_families() if _toolkit_sized(f)))
def test_family_trains_saves_loads(family, tiny_data, tmp_path):
    patch = 32
    cfg = TrainConfig(steps=4, batch=8, eval_every=2, seed=0)
    if whole_image_family(family):  # published weights are imported, not trained on tiles
        with pytest.raises(TrainingError, match="detectors import --arch"):
            train_detector(family, tiny_data["real"], [tiny_data["fake"]], config=cfg, device="cpu", log=lambda m: None)
        return
    res = train_detector(
        family,
        tiny_data["real"],
        [tiny_data["fake"]],
        real_val=tiny_data["real_val"],
        fake_val=[tiny_data["fake_val"]],
        patch=patch,
        config=cfg,
        device="cpu",
        log=lambda m: None,
    )
    det = res.detector
    # a zero-shot family is thresholded at a false-positive rate on real photos, not calibrated
    real_only = getattr(det.net, "trained_on_real_only", False)
    assert det.calibration["method"] == ("none" if real_only else "platt")
    assert 0.0 <= res.metrics["val_auc"] <= 1.0
    x = np.stack(upsampled_images(6, 9))
    before = det.logits(x)
    assert np.all(np.isfinite(before))
    sha = det.save(tmp_path / family, card={"name": family})
    loaded = load_detector(tmp_path / family, device="cpu")
    assert loaded.sha256 == sha and loaded.family == family and loaded.patch == patch
    np.testing.assert_array_equal(loaded.logits(x), before)
    p = loaded.probabilities(np.sort(before))
    assert np.all(np.diff(p) >= 0)


def test_cnn_learns_upsampling_trace(tiny_data):
    res = train_detector(
        "npr",
        tiny_data["real"],
        [tiny_data["fake"]],
        real_val=tiny_data["real_val"],
        fake_val=[tiny_data["fake_val"]],
        config=TrainConfig(steps=60, batch=32, eval_every=20, lr=3e-3, blur_p=0, jpeg_p=0),
        device="cpu",
        log=lambda m: None,
    )
    data = EvalSet([*smooth_images(40, 11), *upsampled_images(40, 12)], np.r_[np.zeros(40), np.ones(40)].astype(int), ["real"] * 40 + ["upsampled"] * 40)
    rep = evaluate(res.detector, data)
    assert rep["overall"]["auc"] > 0.9, rep["overall"]
    assert set(rep["per_generator"]) == {"upsampled"}
    rob = robustness(res.detector, data, {"identity": lambda im, rng=None: im})
    assert rob["identity"]["auc"] == pytest.approx(rep["overall"]["auc"])


def test_freq_logreg_separates_closed_form(tiny_data):
    res = train_detector(
        "freq-logreg", tiny_data["real"], [tiny_data["fake"]], real_val=tiny_data["real_val"],
        fake_val=[tiny_data["fake_val"]], config=TrainConfig(blur_p=0, jpeg_p=0), device="cpu", log=lambda m: None,
    )
    assert res.metrics["val_auc"] > 0.95


# ---------------------------------------------------------------- format guard


def test_format_guard_refuses_codec_shortcut():
    real = collect([src(smooth_images(10, 1), "real", "r")], 0, limit=100, family_default="real")
    fake = collect([src(upsampled_images(10, 2), "generated", "f")], 1, limit=100, family_default="generated")
    real.encodings = ["jpeg"] * 10
    with pytest.raises(TrainingError, match="format mismatch"):
        format_guard(real, fake, None)
    assert format_guard(real, fake, "jpeg:quality=95")["reencode"] == "jpeg:quality=95"
    fake.encodings = ["jpeg"] * 10
    format_guard(real, fake, None)  # same codec on both sides: accepted


# ---------------------------------------------------------------- tiling and explanations


def test_tiling_covers_image_and_caps_tiles():
    tiles, pos, grid, notes = tile_image(np.zeros((70, 100, 3), np.uint8), 32)
    assert grid == (3, 4) and tiles.shape == (12, 32, 32, 3)
    assert max(y for y, _ in pos) == 70 - 32 and max(x for _, x in pos) == 100 - 32
    tiles, pos, grid, notes = tile_image(np.zeros((320, 320, 3), np.uint8), 32, max_tiles=10)
    assert len(tiles) == 10 and any("evenly spaced" in n for n in notes)
    tiles, _, _, notes = tile_image(np.zeros((10, 20, 3), np.uint8), 32)
    assert tiles.shape[1:3] == (32, 32) and "enlarged" in notes[0]


def test_score_many_matches_single_and_aggregates_mean_logit():
    det = Detector.create("cnn", device="cpu")
    torch.manual_seed(0)
    imgs = [RNG.integers(0, 256, (64, 96, 3), dtype=np.uint8), RNG.integers(0, 256, (32, 32, 3), dtype=np.uint8)]
    many = det.score_many(imgs)
    one = det.score(imgs[0])
    assert many[0].logit == pytest.approx(one.logit, abs=1e-5)
    tiles, *_ = tile_image(imgs[0], 32)
    assert one.logit == pytest.approx(float(det.logits(tiles).mean()), abs=1e-5)


def test_explanations_shapes(tiny_data):
    from genvis_trust.detectors.explain import gradcam, overlay, patch_score_map

    det = Detector.create("cnn", device="cpu")
    img = RNG.integers(0, 256, (96, 64, 3), dtype=np.uint8)
    m = patch_score_map(det, img)
    assert m.shape == (3, 2) and np.all((m >= 0) & (m <= 1))
    cam = gradcam(det, img[:32, :32])
    assert cam.shape == (32, 32) and cam.min() >= 0 and cam.max() <= 1
    assert overlay(img, m).shape == img.shape


def test_stability_flags_flip():
    det = Detector.create("cnn", device="cpu")
    v = stability(det, RNG.integers(0, 256, (32, 32, 3), dtype=np.uint8))
    assert set(v.perturbed) == {"jpeg_90", "resize_0.9", "blur_0.5"}
    allp = [v.probability, *v.perturbed.values()]
    assert v.uncertain == (min(allp) < 0.5 <= max(allp))


# ---------------------------------------------------------------- checkpoint import


def test_import_cnndetection_layout(tmp_path):
    """A CNNDetection file imports as ``cnndetection`` (also when asked by its old name,
    ``resnet50``), which normalises in ``prepare_input`` and scores the whole image."""
    from torchvision.models import resnet50

    net = resnet50(weights=None, num_classes=1)
    f = tmp_path / "blur_jpg_prob0.1.pth"
    torch.save({"model": net.state_dict(), "total_steps": 10}, f)
    det = import_checkpoint(f, "resnet50")
    assert det.family == "cnndetection" and det.card["renamed_from"] == "resnet50" and det.whole_image
    assert det.card["published"]["licence"] == "CC-BY-NC-SA-4.0"
    img = RNG.integers(0, 256, (64, 48, 3), dtype=np.uint8)
    x = torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    net.eval()
    with torch.no_grad():
        assert det.score(img).logit == pytest.approx(net((x - mean) / std).item(), rel=1e-5, abs=1e-5)
    det.save(tmp_path / "art")
    assert load_detector(tmp_path / "art", device="cpu").family == "cnndetection"


def test_legacy_resnet50_artifact_still_loads_and_tiles(tmp_path):
    """Artifacts made with the old tile form keep their family and their tile scoring."""
    det = Detector.create("resnet50", device="cpu")
    det.save(tmp_path / "old")
    old = load_detector(tmp_path / "old", device="cpu")
    assert old.family == "resnet50" and not old.whole_image
    assert old.score(RNG.integers(0, 256, (224, 448, 3), dtype=np.uint8)).tiles == 2


def test_import_npr_raw_state_dict(tmp_path):
    from genvis_trust.detectors.npr import NPRNet

    net = NPRNet(width=64, blocks=(3, 4))
    keys = set(net.state_dict())
    assert {"conv1.weight", "fc1.weight", "layer1.0.conv1.weight", "layer2.3.bn3.weight"} <= keys
    f = tmp_path / "NPR.pth"
    torch.save({f"module.{k}": v for k, v in net.state_dict().items()}, f)
    det = import_checkpoint(f, "npr")
    assert det.net_config["width"] == 64 and list(det.net_config["blocks"]) == [3, 4]
    assert det.net_config["whole_image"] and det.whole_image  # the published form
    for k, v in net.state_dict().items():
        assert torch.equal(det.net.state_dict()[k], v)


def test_import_refuses_pickled_objects_and_wrong_layout(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("unpickled!",))

    f = tmp_path / "evil.pth"
    torch.save({"model": Evil()}, f)
    with pytest.raises(CheckpointImportError, match="weights-only"):
        import_checkpoint(f, "resnet50")
    g = tmp_path / "small.pth"
    torch.save({"model": {"fc.weight": torch.zeros(2, 2)}}, g)
    with pytest.raises(CheckpointImportError, match="does not fit"):
        import_checkpoint(g, "resnet50")


# ---------------------------------------------------------------- CLI


def test_cli_evaluate_and_explain(tmp_path, tiny_data):
    from typer.testing import CliRunner

    from genvis_trust.cli.main import app
    from genvis_trust.datasets import CorpusWriter

    res = train_detector(
        "cnn", tiny_data["real"], [tiny_data["fake"]], real_val=tiny_data["real_val"], fake_val=[tiny_data["fake_val"]],
        config=TrainConfig(steps=4, batch=8, eval_every=2), device="cpu", log=lambda m: None,
    )
    res.detector.save(tmp_path / "det", card={"name": "det"})
    for name, imgs, label in (("real", smooth_images(20, 5), "real"), ("fake", upsampled_images(20, 6), "generated")):
        with CorpusWriter(tmp_path / name) as w:
            for i, im in enumerate(imgs):
                w.add(im, label=label, source=name, family="upsampled" if label == "generated" else None, group=f"{name}{i}")
    r = CliRunner().invoke(
        app,
        ["evaluate", str(tmp_path / "det"), "--real", str(tmp_path / "real"), "--fake", str(tmp_path / "fake"),
         "--split", "all", "--json", "--out", str(tmp_path / "ev")],
    )
    assert r.exit_code == 0, r.output
    import json

    rep = json.loads(r.stdout)
    assert rep["overall"]["n"] == 40 and "upsampled" in rep["per_generator"]
    assert (tmp_path / "ev" / "roc.png").stat().st_size > 1000
    cv2.imwrite(str(tmp_path / "x.png"), smooth_images(1, 7, size=96)[0])
    r = CliRunner().invoke(app, ["detectors", "explain", str(tmp_path / "x.png"), "--detector", str(tmp_path / "det"), "--out", str(tmp_path / "h.png")])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "h.png").exists()
    r = CliRunner().invoke(app, ["evaluate", "no-such-detector", "--fake", str(tmp_path / "fake")])
    assert r.exit_code == 2 and "no detector named" in r.output


def test_platt_stays_finite_on_separable_validation_and_keeps_ranking():
    z = np.r_[RNG.normal(-9, 1, 200), RNG.normal(9, 1, 200)]
    y = np.r_[np.zeros(200), np.ones(200)]
    state = fit_calibration(z, y, "platt")
    assert 0 < state["a"] < 5
    far = np.array([30.0, 31.0, 32.0])  # beyond the validation range: still strictly ordered
    assert np.all(np.diff(apply_calibration(state, far)) > 0)


def test_optimized_inference_matches_eager_and_keeps_gradients():
    from genvis_trust.detectors.explain import gradcam

    det = Detector.create("cnn", device="cpu")
    x = RNG.integers(0, 256, (20, 32, 32, 3), dtype=np.uint8)
    eager = det.logits(x)
    assert det.optimize_for_inference()
    np.testing.assert_allclose(det.logits(x), eager, atol=1e-4)
    assert gradcam(det, x[0]).shape == (32, 32)  # the eager network still takes gradients


@pytest.mark.parametrize("family", [f for f in list_families() if f != "resnet50" and _toolkit_sized(f) and not whole_image_family(f)])
def test_folded_network_gives_the_frozen_graphs_logits(family):
    """The default CPU form (batch norms folded, eager, channels-last) gives the TorchScript
    graph's logits where a family folds every batch norm it holds (else ``auto`` builds the
    graph), at any batch size."""
    torch.manual_seed(0)
    folded, graph = Detector.create(family, device="cpu"), Detector.create(family, device="cpu")
    graph.net.load_state_dict(folded.net.state_dict())
    for d in (folded, graph):  # batch-norm statistics that are not the identity
        for m in d.net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                g = torch.Generator().manual_seed(m.num_features)
                m.running_mean.copy_(torch.rand(m.num_features, generator=g) - 0.5)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
    x = RNG.integers(0, 256, (5, folded.patch, folded.patch, 3), dtype=np.uint8)
    eager = folded.logits(x)
    assert folded.optimize_for_inference()
    if folded.inference_backend != "folded":
        assert folded.inference_backend == "torchscript"  # a family that does not fold
        return
    assert graph.optimize_for_inference("torchscript")
    for bs in (1, 2, 5):
        np.testing.assert_allclose(folded.logits(x, batch_size=bs), graph.logits(x, batch_size=bs), rtol=0, atol=1e-6)
        np.testing.assert_allclose(folded.logits(x, batch_size=bs), eager, atol=1e-4)
    n_bn = [sum(isinstance(m, torch.nn.BatchNorm2d) for m in d.net.modules()) for d in (folded, graph)]
    assert n_bn[0] == n_bn[1]  # self.net stays the eager network (gradients, training)


def test_bundled_default_folded_is_the_frozen_graph_bit_for_bit():
    det, graph = load_detector("default", device="cpu"), load_detector("default", device="cpu")
    assert det.optimize_for_inference() and det.inference_backend == "folded"
    assert graph.optimize_for_inference("torchscript")
    x = RNG.integers(0, 256, (6, det.patch, det.patch, 3), dtype=np.uint8)
    for bs in (1, 6):
        z, m = det.logits(x, bs, members=True)
        zg, mg = graph.logits(x, bs, members=True)
        np.testing.assert_array_equal(z, zg)
        np.testing.assert_array_equal(m, mg)


def test_cpu_batch_follows_the_thread_count_and_keeps_the_logits(monkeypatch):
    """One torch thread: batches of 4 of the default's 128 px tiles (they stay in cache: ~1.25x
    batches of 16 on one core); more threads, or smaller tiles: 16. The logits do not depend on it."""
    from genvis_trust.scoring.engine import ScoringEngine

    det = load_detector("default", device="cpu")
    threads = torch.get_num_threads()
    try:
        monkeypatch.setenv("OMP_NUM_THREADS", "1")
        assert ScoringEngine(det).batch_size == 4
        assert ScoringEngine(Detector.create("cnn", device="cpu")).batch_size == 16  # 32 px tiles: not measured at 4
        monkeypatch.setenv("OMP_NUM_THREADS", "2")
        assert ScoringEngine(det).batch_size == 16
        assert ScoringEngine(det, batch_size=7).batch_size == 7
    finally:
        torch.set_num_threads(threads)
    x = RNG.integers(0, 256, (16, det.patch, det.patch, 3), dtype=np.uint8)
    np.testing.assert_allclose(det.logits(x, 4), det.logits(x, 16), rtol=0, atol=1e-6)


def test_stack_sub_tiles_are_the_members_own_tiles():
    """The stack reads a member with a smaller input as a grid of its own sub-tiles (written
    with explicit sizes so it exports to ONNX): each column is that member's mean logit over
    the sub-tiles cut by hand."""
    det = load_detector("default", device="cpu")
    x = torch.from_numpy(RNG.random((3, 3, det.patch, det.patch), dtype=np.float32))
    with torch.no_grad():
        cols = det.net.member_logits(x)
        for spec, net, col in zip(det.net.member_specs, det.net.members, cols.T, strict=True):
            p = spec["patch"]
            subs = [x[:, :, y : y + p, x0 : x0 + p] for y in range(0, det.patch, p) for x0 in range(0, det.patch, p)]
            want = torch.stack([net(s) for s in subs], 1).mean(1)
            np.testing.assert_allclose(col.numpy(), want.numpy(), atol=1e-5)


def test_onnxruntime_graph_matches_the_network_at_any_batch():
    pytest.importorskip("onnx")
    det = load_detector("default", device="cpu")
    x = RNG.integers(0, 256, (5, det.patch, det.patch, 3), dtype=np.uint8)
    eager = det.logits(x)
    assert det.optimize_for_inference("onnxruntime") and det.inference_backend == "onnxruntime"
    for bs in (1, 2, 5):  # exported with a free batch axis
        np.testing.assert_allclose(det.logits(x, batch_size=bs), eager, atol=1e-4)


def test_onnxruntime_backend_without_onnx_says_what_to_install(monkeypatch):
    import genvis_trust.detectors.onnx_graph as og

    monkeypatch.setattr(og, "onnx_available", lambda: False)
    det = Detector.create("cnn", device="cpu")
    with pytest.raises(ImportError, match=r"genvis-trust\[onnx\]"):
        det.optimize_for_inference("onnxruntime")
    assert det.inference_backend == "eager"
    assert det.optimize_for_inference() and det.inference_backend == "torchscript"  # the default needs no onnx


def test_a_family_onnx_cannot_export_keeps_eager_and_stdout_clean(capfd):
    pytest.importorskip("onnx")
    det = Detector.create("freq-cnn", device="cpu")  # an FFT: no ONNX operator for it here
    assert not det.optimize_for_inference("onnxruntime")
    assert det.inference_backend == "eager"
    assert capfd.readouterr().out == ""  # the exporter's graph dump never reaches the data sink
