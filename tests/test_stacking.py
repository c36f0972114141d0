"""scripts/stack_realworld.py end to end on synthetic member scores: the fit, leave-one-generator-out,
the up-scaled head, and the bundled artifact it writes (tiny real detectors, saved and reloaded)."""

from __future__ import annotations

import json
import runpy
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "stack_realworld.py"
ENCS = ("orig", "jpeg90", "resize512")
REAL = ("orig", "jpeg90", "resize512", "jpeg40", "upscale2x", "crop60", "letterbox16x9", "png_resave")


def _member_scores(rng, shift: dict[str, float], upscaled_sep: float, upscaled_real: float) -> dict:
    """One member's eval entry: logits per set and encoding, domain codes (up-scaled variants
    of photos and the 'soft' generator are voided as up-scaled; up-scaled photos score
    ``upscaled_real``, the soft generator ``upscaled_real + upscaled_sep``)."""
    logits, ood, codes = {}, {}, {}
    sets = {"real_val": REAL, "real": REAL, "recon_val": ENCS, "gen-a": ENCS, "gen-b": ENCS, "gen-c": ENCS,
            "bundled:soft": ENCS, "bundled_val:soft": ENCS}
    for name, encs in sets.items():
        for e in encs:
            up = e == "upscale2x" or name.endswith("soft")
            n = 40
            mu = 0.0 if name.startswith("real") else shift.get(name.split(":")[-1], 2.0)
            if up:
                mu = upscaled_real + (0.0 if name.startswith("real") else upscaled_sep)
            logits.setdefault(name, {})[e] = (mu + rng.normal(0, 1, n)).round(4).tolist()
            ood.setdefault(name, {})[e] = [up] * n
            codes.setdefault(name, {})[e] = [["upscaled"] if up else []] * n
    return {"logits": logits, "out_of_domain": ood, "domain_codes": codes}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from genvis_trust.detectors import Detector

    tmp = tmp_path_factory.mktemp("stack")
    rng = np.random.default_rng(0)
    torch.manual_seed(0)
    paths = []
    for name, fam, cfg in (("a", "npr", {"width": 8, "blocks": [1, 1]}), ("z", "zed", {"width": 8, "levels": 2}),
                           ("d", "npr", {"width": 8, "blocks": [1, 1]})):
        det = Detector.create(fam, patch=64 if fam == "npr" else 32, device="cpu", **cfg)
        det.card = {"domain": {"min_side": 64, "min_hf_share": 0.02}} if name == "d" else {}
        det.save(tmp / name)
        paths.append(str(tmp / name))
    # member a separates gen-a and gen-b, z separates gen-c but reads up-scaled photos as
    # generated (as the zero-shot member does), d separates the soft generator when up-scaled
    ev = {"detectors": {
        paths[0]: _member_scores(rng, {"gen-a": 3.0, "gen-b": 3.0, "gen-c": 0.0, "recon_val": 2.0}, 0.0, 0.0),
        paths[1]: _member_scores(rng, {"gen-a": 0.0, "gen-b": 0.0, "gen-c": 3.0, "recon_val": 1.0}, 0.0, 3.0),
        paths[2]: _member_scores(rng, {"gen-a": 0.5, "gen-b": 0.5, "gen-c": 0.5, "recon_val": 0.5}, 4.0, 0.0),
    }, "meta": {"command": "synthetic"}}
    (tmp / "eval.json").write_text(json.dumps(ev))
    return tmp, paths


def _run(args: list[str], code: int = 0) -> None:
    """Run the script as ``python scripts/stack_realworld.py ARGS`` and check its exit code."""
    old = sys.argv
    sys.argv = [str(SCRIPT), *args]
    try:
        with pytest.raises(SystemExit) as e:
            runpy.run_path(str(SCRIPT), run_name="__main__")
        assert e.value.code == code
    finally:
        sys.argv = old


def test_stack_fit_logo_head_and_bundle(setup):
    from genvis_trust.detectors import load_detector

    tmp, (a, z, d) = setup
    _run(["--eval", str(tmp / "eval.json"), "--member", a, "--member", z, "--member", d, "--domain-from", d,
          "--upscaled-head", "--out-results", str(tmp / "res"), "--out-detector", str(tmp / "default")])
    res = json.loads((tmp / "res.json").read_text())
    assert res["generators"] == ["gen-a", "gen-b", "gen-c"] and res["member_names"] == ["a", "z", "d"]
    # a held-out generator is still caught by the member that separates it (gen-c's member also
    # flags up-scaled photos, which by default still constrain the main threshold: not asserted)
    for g in ("gen-a", "gen-b"):
        assert res["logo"][g]["orig"]["tpr"] > 0.6, g
    # the soft generator is voided as up-scaled: only the head can flag it, and it does
    soft = res["final"]["generators"]["bundled:soft"]["orig"]["tpr"]
    assert soft > 0.8
    assert res["final"]["real_fpr"]["upscale2x"] <= 0.15  # the head's own 5% budget, on 40 test photos
    head = res["final"]["head"]
    assert head["name"] == "upscaled" and head["weights"][2] > 0  # d separates the soft generator
    # the bundled artifact carries the main fit and the head, and says which member gave the domain
    det = load_detector(tmp / "default", device="cpu")
    cal = det.calibration
    assert cal["threshold_logit"] == pytest.approx(res["final"]["threshold"])
    assert cal["heads"]["upscaled"]["weights"] == pytest.approx(head["weights"])
    assert cal["heads"]["upscaled"]["b"] == pytest.approx(-head["threshold"])
    assert det.card["domain"]["min_hf_share"] == 0.02 and det.card["stacking"]["members"] == ["a", "z", "d"] and set(det.card["members"]) == {"a", "z", "d"}
    assert det.net.weights.tolist() == pytest.approx(res["final"]["weights"])
    # the card says what a below-threshold score is worth: the held-out generators' samples
    # flagged, pooled (each generator weighted by its samples), beside the test photos' FPR
    sens = det.card["sensitivity"]
    logo = res["logo"]
    n = sum(r["orig"]["n"] for r in logo.values())
    assert sens["generators"] == len(logo) and sens["orig"]["samples"] == n
    assert sens["orig"]["tpr_pooled"] == pytest.approx(sum(r["orig"]["tpr"] * r["orig"]["n"] for r in logo.values()) / n, abs=1e-3)
    assert sens["orig"]["real_fpr"] == pytest.approx(res["final"]["real_fpr"]["orig"], abs=1e-3)
    assert sens["orig"]["tpr_best_generator"] == pytest.approx(max(r["orig"]["tpr"] for r in logo.values()), abs=1e-3)
    # without --upscaled-head nothing voided is ever flagged
    _run(["--eval", str(tmp / "eval.json"), "--learned", a, "--zeroshot", z, "--member", d, "--domain-from", d,
          "--out-results", str(tmp / "res-nohead")])
    nohead = json.loads((tmp / "res-nohead.json").read_text())
    assert nohead["final"]["generators"]["bundled:soft"]["orig"]["tpr"] == 0.0 and "head" not in nohead["final"]


def test_stack_needs_two_members_with_scores(setup, capsys):
    tmp, (a, z, d) = setup
    for args in (["--member", a], ["--member", a, "--member", str(tmp / "nowhere")]):
        _run(["--eval", str(tmp / "eval.json"), *args, "--out-results", str(tmp / "x")], code=2)
    assert "no scores for" in capsys.readouterr().err


def test_extra_validation_forms_feed_the_head_only(setup):
    """A later --val-only run's ``head_*`` forms of the validation photos are merged in and used
    for the up-scaled head's threshold only: the main fit is unchanged."""
    tmp, (a, z, d) = setup
    base = ["--member", a, "--member", z, "--member", d, "--domain-from", d, "--upscaled-head"]
    _run(["--eval", str(tmp / "eval.json"), *base, "--out-results", str(tmp / "r1")])
    rng = np.random.default_rng(5)
    extra = {"detectors": {}, "meta": {"command": "synthetic --val-only"}}
    for p, mu in ((a, 0.0), (z, 3.0), (d, 2.0)):  # up-scaled photos that d scores higher than before
        extra["detectors"][p] = {"logits": {"real_val": {"head_upscale3x": (mu + rng.normal(0, 1, 40)).tolist()}},
                                 "out_of_domain": {"real_val": {"head_upscale3x": [True] * 40}},
                                 "domain_codes": {"real_val": {"head_upscale3x": [["upscaled"]] * 40}}}
    (tmp / "extra.json").write_text(json.dumps(extra))
    _run(["--eval", str(tmp / "eval.json"), "--eval", str(tmp / "extra.json"), *base, "--out-results", str(tmp / "r2")])
    r1, r2 = (json.loads((tmp / f"{n}.json").read_text())["final"] for n in ("r1", "r2"))
    assert r2["weights"] == pytest.approx(r1["weights"]) and r2["threshold"] == pytest.approx(r1["threshold"])
    assert r2["head"]["threshold"] != pytest.approx(r1["head"]["threshold"])
    assert "head_upscale3x" not in r2["real_fpr"]  # never a test form
