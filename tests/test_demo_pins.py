"""The README demo folder's scan records are pinned: verdicts, summaries, each signal's
evidence and the detector's scores (to 1e-4, see TOL) equal what the code gave before the scan path
was refactored (issue 10). The fixture was generated from that code by

    PYTHONPATH=. python tests/test_demo_pins.py --write

Re-written once since, when a below-threshold detector score began to quote the card's
sensitivity (issue 13): only those seven detector evidence texts changed.

Only the store's issuer seed is fixed: it goes into the watermark payload and so into the
stamped pixels; the C2PA keys and signatures change per run and do not reach the records
pinned here.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

FIXTURE = Path(__file__).parent / "fixtures" / "demo_records.json"
ISSUER_SEED = "0f" * 16
# Scores agree to 1e-6 on the machine that wrote the fixture; on another x86-64 machine of this
# workplace (2026-12-07, torch 2.14.1) the diffusion samples' scores moved by up to 2e-5
# (diffusion-digits_05 p 0.997483 against 0.997464), which the sampler's 50 steps amplify from
# float rounding in other kernels. 1e-4 keeps the pin far below any change a refactor of the
# scan path would make (verdicts and texts stay exact).
TOL = 1e-4


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
    return {rec["input"]: pinned_view(rec) for rec in recs}


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
    for name in want:
        _close(got[name], want[name], name)


def test_pin_comparison_catches_a_changed_score():
    rec = {"verdict": "uncertain", "detector": {"probability": 0.5, "logit": 0.0}}
    _close(rec, {"verdict": "uncertain", "detector": {"probability": 0.5 + 5e-5, "logit": 0.0}}, "ok")
    with pytest.raises(AssertionError):
        _close(rec, {"verdict": "uncertain", "detector": {"probability": 0.5 + 2e-4, "logit": 0.0}}, "bad")


if __name__ == "__main__" and "--write" in sys.argv:
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        FIXTURE.write_text(json.dumps(run_demo(Path(d) / "demo"), indent=1, sort_keys=True) + "\n")
    print(f"wrote {FIXTURE}")
