"""The scan's stability check runs only where its answer can change the verdict (issue 22,
item 5): counted on the detector's own scoring calls, not on timing."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import numpy as np
import pytest

from genvis_trust.detectors import Detector
from genvis_trust.detectors.evaluation import MILD_PERTURBATIONS, stability
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
    sc = Scanner(Detector.create("cnn", device="cpu"), device="cpu", provenance=False, faces=False)
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
