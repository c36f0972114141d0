"""The README demo folder's scan records are pinned: verdicts, summaries, each signal's
evidence and the detector's scores (to 1e-6, see TOL) equal what the code gave before the scan path
was refactored (issue 10). The fixture was generated from that code by

    PYTHONPATH=. python tests/test_demo_pins.py --write

Re-written once since, when a below-threshold detector score began to quote the card's
sensitivity (issue 13): only those seven detector evidence texts changed. Re-written on
2026-12-07 to add each input's pixel hash: the records were unchanged except the scores of
one diffusion sample (logit 6.39861 -> 6.405958) whose pixels the sampler drew differently on
this machine. Re-written again the same day when the bundled card began to name the small
sizes at which its score counts (32x32, above p 0.5632; benchmarks/results/small-images.md):
only the 30 generated samples' detector evidence texts changed (they gained that sentence);
verdicts, summaries, scores and pixel hashes were kept from the earlier fixture.

Only the store's issuer seed is fixed: it goes into the watermark payload and so into the
stamped pixels; the C2PA keys and signatures change per run and do not reach the records
pinned here.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import pytest

FIXTURE = Path(__file__).parent / "fixtures" / "demo_records.json"
ISSUER_SEED = "0f" * 16
# Scores of inputs whose pixels equal the fixture's are pinned to 1e-6 (plus the rounding unit of
# the records' 6 decimals). The generated samples' pixels themselves can differ between machines:
# on another x86-64 machine of this workplace (2026-12-07, torch 2.14.1) the diffusion sampler's
# float rounding moved one sample's pixels and its logit by 7e-3. Such an input is compared on
# what a machine change cannot move: its verdict, error and signals' kinds, and p within LOOSE.
TOL = 1e-6 + 1e-9
LOOSE = 0.02


def pinned_view(rec: dict) -> dict:
    """What a refactor must not change: no timings, paths, hashes of signed files or key details."""
    det = rec.get("detector")
    return {
        "verdict": rec["verdict"],
        "summary": rec["summary"],
        "error": (rec.get("error") or {}).get("code"),
        # region and face evidence arrived after the pin (issue 14): pinned are the signals it had
        "evidence": [[e["kind"], e["strength"], e["indicates"], e["summary"]] for e in rec["evidence"]
                     if e["kind"] not in ("region", "face")],
        "detector": None if det is None else {
            "probability": det["probability"], "logit": det["logit"],
            "out_of_domain": [o["code"] for o in det.get("out_of_domain") or []],
        },
    }


def run_demo(out: Path) -> dict[str, dict]:
    from typer.testing import CliRunner

    import genvis_trust.provenance.store as store_mod
    from genvis_trust.cli.main import app

    real_secrets = store_mod.secrets

    class FixedSeed:  # only the issuer seed is fixed; everything else stays random
        def __getattr__(self, name):
            return getattr(real_secrets, name)

        @staticmethod
        def token_hex(n=None):
            return ISSUER_SEED

    store_mod.secrets = FixedSeed()
    try:
        r = CliRunner().invoke(app, ["demo", "--out", str(out), "--n", "6", "--seed", "0", "--device", "cpu"])
    finally:
        store_mod.secrets = real_secrets
    assert r.exit_code == 0, r.output
    recs = [json.loads(x) for x in (out / "audit" / "results.jsonl").read_text().splitlines()]
    return {rec["input"]: {**pinned_view(rec), "pixels": pixel_hash(out / "images" / rec["input"])} for rec in recs}


def pixel_hash(path: Path) -> str | None:
    """sha256 of the decoded pixels (a signed file's bytes change per run, its pixels do not)."""
    from genvis_trust.io import ImageLoadError, load_image

    try:
        return hashlib.sha256(load_image(path).array.tobytes()).hexdigest()
    except (ImageLoadError, OSError):
        return None


def _same_input_class(got: dict, want: dict, where: str) -> None:
    """For an input whose pixels differ from the fixture's: what a machine change cannot move."""
    assert got["verdict"] == want["verdict"] and got["error"] == want["error"], f"{where}: {got['verdict']} != {want['verdict']}"
    assert [e[:3] for e in got["evidence"]] == [e[:3] for e in want["evidence"]], where
    if want["detector"] is not None:
        assert abs(got["detector"]["probability"] - want["detector"]["probability"]) <= LOOSE, where


def _close(a, b, where: str) -> None:
    if isinstance(a, float) or isinstance(b, float):
        assert a is not None and b is not None and abs(a - b) <= TOL, f"{where}: {a} != {b}"
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            _close(a[k], b[k], f"{where}.{k}")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def test_demo_records_are_pinned(tmp_path):
    want = json.loads(FIXTURE.read_text())
    got = run_demo(tmp_path / "demo")
    assert sorted(got) == sorted(want)
    assert len(got) == 47
    differ = [n for n in want if got[n].pop("pixels") != want[n].pop("pixels")]
    assert len(differ) <= 6, f"{len(differ)} inputs' pixels differ from the fixture's: {differ}"
    for name in want:
        if name in differ:
            _same_input_class(got[name], want[name], name)
        else:
            _close(got[name], want[name], name)


def test_pin_comparison_catches_a_changed_score():
    rec = {"verdict": "uncertain", "detector": {"probability": 0.5, "logit": 0.0}}
    _close(rec, {"verdict": "uncertain", "detector": {"probability": 0.5 + 1e-6, "logit": 0.0}}, "ok")
    with pytest.raises(AssertionError):
        _close(rec, {"verdict": "uncertain", "detector": {"probability": 0.5 + 2e-6, "logit": 0.0}}, "bad")


def test_inputs_with_other_pixels_keep_their_verdict_and_signals():
    want = {"verdict": "generated", "error": None, "evidence": [["detector", "learned", "generated", "p=0.99"]],
            "detector": {"probability": 0.99, "logit": 4.6}}
    _same_input_class({**want, "evidence": [["detector", "learned", "generated", "p=0.98"]],
                       "detector": {"probability": 0.98, "logit": 3.9}}, want, "ok")
    with pytest.raises(AssertionError):
        _same_input_class({**want, "verdict": "likely_generated"}, want, "verdict")
    with pytest.raises(AssertionError):
        _same_input_class({**want, "detector": {"probability": 0.9, "logit": 2.2}}, want, "p")


if __name__ == "__main__" and "--write" in sys.argv:
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        FIXTURE.write_text(json.dumps(run_demo(Path(d) / "demo"), indent=1, sort_keys=True) + "\n")
    print(f"wrote {FIXTURE}")
