"""The scan's stability check runs only where its answer can change the verdict (issue 22,
item 5): counted on the detector's own scoring calls, not on timing."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import numpy as np
import pytest

from genvis_trust.detectors import Detector
from genvis_trust.detectors.evaluation import (
    MILD_PERTURBATIONS,
    SEQUENTIAL_CHUNK,
    _sample_order,
    sequential_copy_score,
    stability,
)
from genvis_trust.evidence import Evidence
from genvis_trust.scan import THRESHOLD, Scanner, stability_skip_reason
from genvis_trust.scoring.engine import ScoreRecord


def _image(seed: int = 0, side: int = 96) -> np.ndarray:
    r = np.random.default_rng(seed)
    return np.clip(r.normal(128, 40, (side, side, 3)), 0, 255).astype(np.uint8)


@pytest.fixture()
def spied(monkeypatch):
    """A scanner on a real (random) detector whose engine records get a chosen p, and a list
    of the images each ``score_many`` call (the stability check's only way to the network) got."""
    import torch

    torch.manual_seed(0)
    # every tile of every copy (the copy-level rules; the sequential tile reading is tested below)
    sc = Scanner(Detector.create("cnn", device="cpu"), device="cpu", provenance=False, faces=False, exact_stability=True)
    calls: list[int] = []
    real = sc.detector.score_many

    def counting(images, *a, **k):
        calls.append(len(images))
        return real(images, *a, **k)

    monkeypatch.setattr(sc.detector, "score_many", counting)
    wanted: dict[str, float] = {}
    real_paths = sc.engine.score_paths

    def with_p(inputs, names=None):
        for rec in real_paths(inputs, names):
            if rec.score is not None and rec.input in wanted:
                rec.score = dataclasses.replace(rec.score, probability=wanted[rec.input])
            yield rec

    monkeypatch.setattr(sc.engine, "score_paths", with_p)
    return sc, calls, wanted


def test_a_score_far_below_the_threshold_gets_no_stability_pass(spied):
    sc, calls, wanted = spied
    wanted["low"] = 0.03
    (res,) = sc.scan([_image()], names=["low"])
    assert calls == []  # no perturbed copy went through the network
    assert res.stability is None
    st = res.to_dict()["detector"]["stability"]
    assert "skipped" in st and "outside the uncertain band" in st["skipped"]
    assert res.verdict == "no_evidence"


def test_near_the_threshold_the_check_runs_and_can_still_say_uncertain(spied):
    sc, calls, wanted = spied
    img = _image(1)
    # the real detector's p on the first perturbed copy, then a base p on the other side of the
    # threshold (inside the band): the first copy flips the verdict
    first = sc.detector.score_many([next(iter(MILD_PERTURBATIONS.values()))(img)], sc.engine.batch_size)[0].probability
    calls.clear()
    wanted["near"] = THRESHOLD - 0.01 if first >= THRESHOLD else THRESHOLD + 0.01
    (res,) = sc.scan([img], names=["near"])
    assert res.verdict == "uncertain"
    assert calls == [1]  # one copy scored: the answer was known after it
    st = res.to_dict()["detector"]["stability"]
    assert st["uncertain"] is True and list(st["perturbed"]) == [next(iter(MILD_PERTURBATIONS))]
    assert st["not_scored"]["copies"] == list(MILD_PERTURBATIONS)[1:]


def test_a_stable_score_in_the_band_scores_every_copy(spied):
    sc, calls, wanted = spied
    img = _image(2)
    ps = [s.probability for s in sc.detector.score_many([f(img) for f in MILD_PERTURBATIONS.values()], 16)]
    calls.clear()
    side_hi = all(p >= THRESHOLD for p in ps)
    if not side_hi and not all(p < THRESHOLD for p in ps):
        pytest.skip("this random detector's copies straddle the threshold")
    wanted["stable"] = 0.75 if side_hi else 0.25
    (res,) = sc.scan([img], names=["stable"])
    assert calls == [1, 1, 1] and res.stability is not None and not res.stability.uncertain
    assert res.verdict == ("likely_generated" if side_hi else "no_evidence")


def test_early_stop_gives_the_same_answer_as_scoring_every_copy():
    import torch

    torch.manual_seed(0)
    det = Detector.create("cnn", device="cpu")
    img = _image(3)
    for base in (0.3, 0.49, 0.51, 0.7):
        full = stability(det, img, score=base, batch_size=16)
        fast = stability(det, img, score=base, batch_size=16, stop_at_flip=True)
        assert fast.uncertain == full.uncertain
        assert all(abs(fast.perturbed[k] - full.perturbed[k]) < 1e-6 for k in fast.perturbed)
        assert set(fast.perturbed) | set(fast.not_scored) == set(MILD_PERTURBATIONS)


def _record(p: float, evidence=(), ood=()) -> ScoreRecord:
    from genvis_trust.detectors.detector import DetectionScore

    score = DetectionScore(probability=p, logit=float(np.log(p / (1 - p))), calibrated=True, detector="t", tiles=1,
                           grid=(1, 1), out_of_domain=list(ood))
    prov = SimpleNamespace(evidence=list(evidence), input=SimpleNamespace(sha256="0" * 64), error=None)
    return ScoreRecord("x", score, {}, None, None, prov)


def test_skip_only_where_the_verdict_cannot_change():
    assert stability_skip_reason(_record(0.45)) is None  # decided by the detector: the check matters
    assert stability_skip_reason(_record(0.55)) is None
    meta = Evidence("metadata", "declared", "names a generator", "generated")
    r = stability_skip_reason(_record(0.45, [meta]))
    assert r is not None and "likely_generated" in r and "stronger evidence" in r
    ood = {"code": "grey", "message": "grey image"}
    r = stability_skip_reason(_record(0.45, ood=[ood]))
    assert r is not None and "not used" in r
    assert "outside the uncertain band" in stability_skip_reason(_record(0.9))


# -- the sequential check: each copy's tiles read until its side of the threshold is clear


def _tile_detector(seed: int = 0):
    """A random 32 px tile detector (up to 64 tiles per image) whose last layer is scaled so
    that its tile logits spread as a trained one's do (sd ~0.8 on :func:`_structured`)."""
    import torch

    torch.manual_seed(seed)
    det = Detector.create("cnn", device="cpu")
    last = [m for m in det.net.modules() if isinstance(m, torch.nn.Linear)][-1]
    with torch.no_grad():
        last.weight.mul_(300.0)
        last.bias.zero_()
    return det


def _structured(seed: int, side: int = 256) -> np.ndarray:
    """Smooth colour waves with noise growing from left to right: tiles that differ."""
    r = np.random.default_rng(seed)
    y, x = np.mgrid[0:side, 0:side]
    base = np.stack([128 + 60 * np.sin(x / 9 + seed), 128 + 60 * np.cos(y / 13), 128 + 40 * np.sin((x + y) / 17)], -1)
    return np.clip(base + r.normal(0, 1, (side, side, 3)) * (2 + 60 * x / side)[..., None], 0, 255).astype(np.uint8)


def _count_tiles(det, monkeypatch) -> list[int]:
    seen: list[int] = []
    real = det.logits

    def counting(tiles, *a, **k):
        seen.append(len(tiles))
        return real(tiles, *a, **k)

    monkeypatch.setattr(det, "logits", counting)
    return seen


def test_sample_order_is_a_fixed_permutation():
    for n in (1, 2, 5, 16, 49, 64, 100):
        o = _sample_order(n)
        assert sorted(o.tolist()) == list(range(n)) and o.tolist() == _sample_order(n).tolist()
    assert _sample_order(64)[:16].tolist() != list(range(16))  # not the first rows of the grid


def _copy_case(monkeypatch, seed: int, perturbation: str):
    """A random tile detector, a 256 px image (64 tiles) and its score, one perturbed copy and
    that copy's p scored whole, and the list of tile counts the detector is asked for from now on."""
    det = _tile_detector()
    img = _structured(seed)
    base = det.score(img)
    copy = MILD_PERTURBATIONS[perturbation](img)
    whole = det.score(copy).probability
    return det, base, copy, whole, _count_tiles(det, monkeypatch)


def test_a_copy_read_to_the_end_scores_exactly_as_the_whole_copy(monkeypatch):
    det, base, copy, whole, seen = _copy_case(monkeypatch, 4, "blur_0.5")
    # no stopping (infinitely many standard errors): every chunk read, the p is the whole copy's
    p, used, n = sequential_copy_score(det, copy, base, batch_size=16, sigmas=float("inf"))
    assert (used, n) == (64, 64) and seen == [SEQUENTIAL_CHUNK] * (64 // SEQUENTIAL_CHUNK)
    assert p == whole  # the same tiles, logits and aggregation as scoring the copy whole


def test_a_copy_far_from_the_threshold_stops_early_and_estimates_close_to_the_whole_copy(monkeypatch):
    det, base, copy, whole, seen = _copy_case(monkeypatch, 5, "jpeg_90")
    # a threshold well away from this image's p: its side is clear after the first chunk
    far = 0.05 if whole > 0.5 else 0.95
    p, used, n = sequential_copy_score(det, copy, base, threshold=far, batch_size=16)
    assert (used, n) == (SEQUENTIAL_CHUNK, 64) and seen == [SEQUENTIAL_CHUNK]
    assert (p >= far) == (whole >= far)
    assert abs(p - whole) < 0.02  # paired with the original's tiles: a close estimate from a quarter of them
    # the estimate is the original's mean tile logit plus the mean change of the tiles read, each
    # copy tile paired with the original's tile at the same place
    from genvis_trust.detectors.calibration import apply_calibration

    idx = np.sort(_sample_order(64)[:SEQUENTIAL_CHUNK])
    zb = np.asarray(base.tile_logits, np.float64)
    zc = np.asarray(det.logits(det.tiles(copy)[0][idx], 16), np.float64)
    paired = float(apply_calibration(det.calibration, np.array([zb.mean() + (zc - zb[idx]).mean()]))[0])
    unpaired = float(apply_calibration(det.calibration, np.array([zc.mean()]))[0])
    assert abs(p - paired) < 1e-9 and abs(p - unpaired) > 1e-3
    # ... and its standard error is the paired changes' (not that of tiles matched at other
    # places): a threshold 8 paired standard errors away is clear after the first step
    d = zc - zb[idx]
    se = d.std(ddof=1) / np.sqrt(16) * np.sqrt(48 / 64)
    mismatched = zc - zb[np.sort(_sample_order(64)[16:32])]
    assert mismatched.std(ddof=1) > 3 * d.std(ddof=1)  # what a wrong pairing would estimate from
    est = zb.mean() + d.mean()
    near = float(apply_calibration(det.calibration, np.array([est + (8 if whole < far else -8) * se]))[0])
    assert sequential_copy_score(det, copy, base, threshold=near, batch_size=16)[1] == SEQUENTIAL_CHUNK


def test_a_copy_at_the_threshold_is_read_to_the_end(monkeypatch):
    det, base, copy, whole, seen = _copy_case(monkeypatch, 6, "resize_0.9")
    # the threshold at the copy's own p: no estimate short of every tile can settle its side
    p, used, n = sequential_copy_score(det, copy, base, threshold=whole, batch_size=16)
    assert (used, n) == (64, 64) and sum(seen) == 64
    assert p == whole


def test_the_sequential_check_answers_as_the_exact_one():
    """Thresholds placed just beside each copy's own p, where reading stops late or never, and
    far from it: the same answers as reading every tile, each path taken at least once."""
    reads = set()
    for seed in (7, 8, 9):
        det = _tile_detector(seed)
        img = _structured(seed)
        base = det.score(img)
        exact_p = {k: det.score(f(img)).probability for k, f in MILD_PERTURBATIONS.items()}
        thresholds = {round(v + d, 4) for v in exact_p.values() for d in (-0.02, -0.005, 0.005, 0.02)} | {0.3, 0.5}
        for thr in sorted(thresholds):
            exact = stability(det, img, threshold=thr, score=base.probability, batch_size=16)
            seq = stability(det, img, threshold=thr, base=base, batch_size=16)
            assert seq.uncertain == exact.uncertain, (seed, thr)
            for k, v in seq.perturbed.items():
                used, n = seq.tiles[k]
                reads.add("whole" if used == n else "first" if used == SEQUENTIAL_CHUNK else "more")
                assert (v >= thr) == (exact.perturbed[k] >= thr), (seed, thr, k)
                assert v == exact.perturbed[k] if used == n else abs(v - exact.perturbed[k]) < 0.05
    assert reads == {"first", "more", "whole"}


def test_scan_records_how_many_tiles_of_each_copy_were_read():
    import torch

    torch.manual_seed(0)
    sc = Scanner(Detector.create("cnn", device="cpu"), device="cpu", provenance=False, faces=False)
    img = _image(10, side=256)
    p = sc.detector.score(img).probability
    if not 0.2 <= p <= 0.8:
        pytest.skip("this random detector's p is outside the band where the check runs")
    (res,) = sc.scan([img], names=["x"])
    st = res.to_dict()["detector"]["stability"]
    assert set(st["tiles"]) <= set(MILD_PERTURBATIONS)
    for v in st["tiles"].values():
        assert v["of"] == 64 and SEQUENTIAL_CHUNK <= v["read"] <= v["of"]
    assert ("estimated" in st) == any(v["read"] < v["of"] for v in st["tiles"].values())


def test_cli_exact_stability_reads_every_tile_of_every_copy(tmp_path):
    import json

    import torch
    from typer.testing import CliRunner

    from genvis_trust.cli.main import app
    from genvis_trust.io import encode_image

    torch.manual_seed(0)
    Detector.create("cnn", device="cpu").save(tmp_path / "det", card={"name": "rnd"})
    f = tmp_path / "a.png"
    f.write_bytes(encode_image(_image(10, side=256)))
    base = [str(f), "--detector", str(tmp_path / "det"), "--device", "cpu", "--no-provenance", "--json"]

    def stab(*extra):
        r = CliRunner().invoke(app, ["scan", *base, *extra])
        assert r.exit_code == 0, r.output
        return json.loads(next(x for x in r.stdout.splitlines() if x.startswith("{")))["detector"]["stability"]

    seq, exact = stab(), stab("--exact-stability")
    if "skipped" in seq:
        pytest.skip("this random detector's p is outside the band where the check runs")
    assert exact["tiles"] == {k: {"read": 64, "of": 64} for k in exact["perturbed"]} and "estimated" not in exact
    assert exact["uncertain"] == seq["uncertain"]
    assert any(v["read"] < v["of"] for v in seq["tiles"].values()) == ("estimated" in seq)


def test_with_large_batches_each_copy_is_read_whole_in_one_pass(monkeypatch):
    det = _tile_detector()
    img = _image(11, side=256)
    base = det.score(img)
    seen = _count_tiles(det, monkeypatch)
    v = stability(det, img, threshold=0.99 if base.probability < 0.5 else 0.01, base=base, batch_size=1024)
    assert seen == [64, 64, 64] and v.tiles == {k: (64, 64) for k in MILD_PERTURBATIONS} and not v.estimated
