"""Image-level fusion (`detectors stack` with a whole-image member): a tiny published-form NPR
imported from a seeded checkpoint and a tiny tile member, fitted on small synthetic folders;
the fused logit is the fitted combination of each member's own image logit; scan and audit name
each member with its p and licence; a missing or changed member is refused by name."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from genvis_trust.artifacts import ArtifactError
from genvis_trust.cli.main import app
from genvis_trust.detectors import Detector, load_detector
from genvis_trust.detectors.published import seeded_state_dict

runner = CliRunner()


@pytest.fixture(scope="module")
def data(tmp_path_factory, noise_folders):
    tmp = tmp_path_factory.mktemp("fusion")
    real, gen = noise_folders(tmp, 47, 63)  # noise "photographs", 2x up-sampled noise "generated"; odd sizes on purpose
    # a published-form NPR checkpoint (the raw state dict NPR's code saves), seeded weights, imported
    template = Detector.create("npr", device="cpu", width=8, blocks=[1, 1], whole_image=True).net.state_dict()
    torch.save(seeded_state_dict(template, 3), tmp / "NPR.pth")
    r = runner.invoke(app, ["detectors", "import", str(tmp / "NPR.pth"), "--arch", "npr", "--out", str(tmp / "pub")])
    assert r.exit_code == 0, r.output
    torch.manual_seed(0)
    Detector.create("zed", patch=32, device="cpu", width=8, levels=2).save(tmp / "z", card={"name": "z"})
    return tmp, real, gen


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("GENVIS_TRUST_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def _fit(tmp, name, *extra):
    r = runner.invoke(app, ["detectors", "stack", "--member", str(tmp / "pub"), "--member", str(tmp / "z"),
                            "--real", str(tmp / "real"), "--generated", str(tmp / "gen"), "--name", name, "--json", *extra])
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)


def test_fusion_fit_scores_each_member_its_own_way(data, home):
    tmp, real, gen = data
    rep = _fit(tmp, "fused")
    det = load_detector("fused", device="cpu")
    assert det.family == "fusion" and det.whole_image
    pub, z = load_detector(str(tmp / "pub"), device="cpu"), load_detector(str(tmp / "z"), device="cpu")
    assert pub.whole_image and not z.whole_image
    card = det.card
    assert [(n, m["family"], m["weights_sha256"]) for n, m in card["members"].items()] == [
        (str(tmp / "pub"), "npr", pub.sha256), (str(tmp / "z"), "zed", z.sha256)]
    # the published member's licence is its publication's; the fused detector's is the strictest
    assert card["members"][str(tmp / "pub")]["licence"] == pub.published["licence"]
    assert card["stacking"]["level"].startswith("image (each member scores the image its own way")
    assert rep["stacking"]["weights"] == card["stacking"]["weights"]
    # the fused logit is w . (each member's own image logit) + b, the whole-image member read its
    # publication's way (not tiled) and the tile member through its tiles
    w, b = card["stacking"]["weights"], card["stacking"]["bias"]
    for im in real[:3] + gen[:3]:
        s = det.score(im)
        want = w[0] * pub.score(im).logit + w[1] * z.score(im).logit + b
        assert s.logit == pytest.approx(want, abs=1e-4)
        assert [m["logit"] for m in s.members] == pytest.approx([pub.score(im).logit, z.score(im).logit], abs=1e-5)
    # p = 0.5 at the threshold that kept the budget; in-sample rates are the artifact's own verdicts
    zt = card["stacking"]["threshold_logit"]
    assert det.probabilities(np.array([zt]))[0] == pytest.approx(0.5)
    fprs = card["in_sample"]["real_fpr"]
    assert np.mean(list(fprs.values())) <= 0.05 + 1 / 96
    assert fprs["orig"] == pytest.approx(np.mean([det.score(im).probability >= 0.5 for im in real]), abs=1e-4)
    assert card["in_sample"]["generated_tpr"]["orig"] == pytest.approx(np.mean([det.score(im).probability >= 0.5 for im in gen]), abs=1e-4)


def test_scan_and_audit_name_each_member_with_p_and_licence(data, home, tmp_path):
    tmp, real, gen = data
    _fit(tmp, "fused")
    pub, z, det = (load_detector(str(tmp / "pub"), device="cpu"), load_detector(str(tmp / "z"), device="cpu"),
                   load_detector("fused", device="cpu"))
    files = [tmp / "gen" / "000.png", tmp / "real" / "001.png"]
    r = runner.invoke(app, ["scan", "--detector", "fused", "--no-provenance", "--device", "cpu", "--json", *map(str, files)])
    assert r.exit_code in (0, 1), r.output
    recs = [json.loads(line) for line in r.stdout.splitlines() if line.strip().startswith("{")]
    assert len(recs) == 2
    for f, rec in zip(files, recs, strict=True):
        from genvis_trust.io import load_image

        im = load_image(f).array
        d = rec["detector"]
        assert d["detector"] == "fused" and d["probability"] == pytest.approx(det.score(im).probability, abs=1e-5)
        ms = d["members"]
        assert [m["name"] for m in ms] == [str(tmp / "pub"), str(tmp / "z")]
        # each member's own p: its own calibration (none here: the sigmoid of its logit)
        assert ms[0]["probability"] == pytest.approx(pub.score(im).probability, abs=1e-5)
        assert ms[1]["probability"] == pytest.approx(z.score(im).probability, abs=1e-5)
        assert ms[0]["licence"] == pub.published["licence"] and ms[1]["licence"].startswith("the toolkit's")
        ev = next(e for e in rec["evidence"] if e["kind"] == "detector")
        assert ev["details"]["members"] == ms
        assert "(calibrated, 2 members); members: " in ev["summary"]
        assert f"members: pub p={ms[0]['probability']:.2f} ({ms[0]['licence'].split(' (')[0]}), z p={ms[1]['probability']:.2f}" in ev["summary"]
    # the folder form of --detector, and audit
    r = runner.invoke(app, ["scan", "--detector", str(home / "detectors" / "fused"), "--no-provenance", "--device", "cpu",
                            "--json", str(files[0])])
    assert r.exit_code in (0, 1), r.output
    r = runner.invoke(app, ["audit", str(tmp / "gen"), "--detector", "fused", "--no-provenance", "--device", "cpu",
                            "--out", str(tmp_path / "audit")])
    assert r.exit_code in (0, 1), r.output
    rows = [json.loads(line) for line in (tmp_path / "audit" / "results.jsonl").read_text().splitlines()]
    assert len(rows) == 12 and all(len(row["detector"]["members"]) == 2 for row in rows)


def test_a_missing_or_changed_member_is_refused_by_name(data, home, tmp_path):
    tmp, _, _ = data
    shutil.copytree(tmp / "pub", tmp_path / "npr-pub")
    r = runner.invoke(app, ["detectors", "stack", "--member", str(tmp_path / "npr-pub"), "--member", str(tmp / "z"),
                            "--real", str(tmp / "real"), "--generated", str(tmp / "gen"), "--name", "f2"])
    assert r.exit_code == 0, r.output
    shutil.rmtree(tmp_path / "npr-pub")
    with pytest.raises(ArtifactError, match=r"member '.*npr-pub'.*detectors fetch npr-pub"):
        load_detector("f2", device="cpu")
    r = runner.invoke(app, ["scan", "--detector", "f2", "--no-provenance", "--json", str(tmp / "gen" / "000.png")])
    assert r.exit_code == 2 and "npr-pub" in r.output and "detectors fetch" in r.output
    # other weights under the member's name: refused too (the combination was fitted on the old ones)
    torch.manual_seed(5)
    Detector.create("npr", device="cpu", width=8, blocks=[1, 1], whole_image=True).save(tmp_path / "npr-pub")
    with pytest.raises(ArtifactError, match="other weights"):
        load_detector("f2", device="cpu")


def test_fusion_refusals(data, home):
    tmp, _, _ = data
    r = runner.invoke(app, ["detectors", "stack", "--member", str(tmp / "pub"), "--member", str(tmp / "z"), "--real", str(tmp / "real"),
                            "--generated", str(tmp / "gen"), "--upscaled-head"])
    assert r.exit_code == 2 and "whole images" in r.output
    _fit(tmp, "fused")
    r = runner.invoke(app, ["detectors", "stack", "--member", "fused", "--member", str(tmp / "z"), "--real", str(tmp / "real"),
                            "--generated", str(tmp / "gen"), "--name", "nested"])
    assert r.exit_code == 2 and "itself a fusion" in r.output


def test_engine_batches_members_and_keeps_order_and_the_artifact_round_trips(data, tmp_path):
    """Images of several sizes (so tile members read different numbers of tiles, whole-image
    members different shapes) through the engine in shared batches: each equals scoring it alone,
    and equals w . (each member's own logit) + b; saved and loaded, the fusion names its members
    by folder and sha256 and scores the same."""
    from genvis_trust.detectors.fusion import FusionDetector
    from genvis_trust.scoring.engine import ScoringEngine

    tmp, _, _ = data
    pub, z = load_detector(str(tmp / "pub"), device="cpu"), load_detector(str(tmp / "z"), device="cpu")
    det = FusionDetector([pub, z], [str(tmp / "pub"), str(tmp / "z")], weights=[0.7, -1.3], bias=0.2, device="cpu")
    rng = np.random.default_rng(4)
    imgs = [rng.integers(0, 256, s, dtype=np.uint8) for s in [(40, 50, 3), (70, 95, 3), (33, 41, 3), (40, 50, 3), (120, 64, 3)]]
    alone = [det.score(im).logit for im in imgs]
    want = [0.7 * pub.score(im).logit - 1.3 * z.score(im).logit + 0.2 for im in imgs]
    np.testing.assert_allclose(alone, want, rtol=0, atol=1e-5)
    recs = list(ScoringEngine(det, batch_size=2, optimize=False).score_arrays(imgs))
    np.testing.assert_allclose([r.score.logit for r in recs], alone, rtol=0, atol=1e-5)
    assert all(r.score.tiles == 1 and len(r.score.members) == 2 for r in recs)
    det.save(tmp_path / "f")
    cfg = json.loads((tmp_path / "f" / "config.json").read_text())
    assert cfg["config"]["members"] == [{"name": str(tmp / "pub"), "family": "npr", "weights_sha256": pub.sha256},
                                        {"name": str(tmp / "z"), "family": "zed", "weights_sha256": z.sha256}]
    back = load_detector(str(tmp_path / "f"), device="cpu")
    assert isinstance(back, FusionDetector) and back.weights.tolist() == pytest.approx([0.7, -1.3])
    np.testing.assert_allclose([back.score(im).logit for im in imgs], alone, rtol=0, atol=1e-6)
