"""Records before and after a refactor: ``verify --json`` and ``scan --json`` of every file in
``tests/fixtures`` and of a fixed set of media made once (audio, PDF, a video, images, each
also stamped and signed; broken files), and an audit of a demo run's folder with its HTML
report. Used for issue 23 (one path for every medium): the refactor must leave them identical.

    # once, on the code before the change: build the inputs and record the outputs
    PYTHONPATH=. python scripts/compare_records.py prepare /tmp/media23-baseline
    PYTHONPATH=. python scripts/compare_records.py record /tmp/media23-baseline before
    # after each step
    PYTHONPATH=. python scripts/compare_records.py record /tmp/media23-baseline after
    PYTHONPATH=. python scripts/compare_records.py diff /tmp/media23-baseline before after

The inputs are made once and kept (a signature or a demo's stamped pixels change per run;
the same bytes must go in before and after). What is dropped before comparing: timings
(``elapsed_s``, an audit's clock times) and nothing else; paths are the same folder each run.
Run with ``nice -n 10 taskset -c 0`` on a shared machine (a record takes a few minutes).
"""

from __future__ import annotations

import argparse
import difflib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import wave
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures"
ISSUER_SEED = "0f" * 16
PDF = (b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n2 0 obj<</Type/Pages/Kids[3 0 R]/Count 1>>endobj\n"
       b"3 0 obj<</Type/Page/Parent 2 0 R/MediaBox[0 0 72 72]>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n")


def cli(*args: str, check: bool = False) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    r = subprocess.run([sys.executable, "-m", "genvis_trust.cli.main", *args], env=env, capture_output=True, text=True)
    if check and r.returncode != 0:
        raise SystemExit(f"genvis-trust {' '.join(args)} failed ({r.returncode}):\n{r.stderr[-3000:]}")
    return r


# --------------------------------------------------------------------------- inputs, made once


def _wav() -> bytes:
    import numpy as np

    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes((np.sin(np.arange(4000) / 3) * 3000).astype(np.int16).tobytes())
    return buf.getvalue()


def prepare(base: Path) -> None:
    import numpy as np

    from genvis_trust.datasets import get_source
    from genvis_trust.io import encode_image
    from genvis_trust.video import encode_mp4

    if base.exists():
        raise SystemExit(f"{base} exists: the inputs are made once")
    plain, stamped = base / "inputs" / "plain", base / "inputs" / "stamped"
    plain.mkdir(parents=True)
    # a demo run with the issuer seed of tests/test_demo_pins.py: its images, keys and store
    sys.path.insert(0, str(REPO / "tests"))
    from test_demo_pins import run_demo

    run_demo(base / "demo")
    shutil.rmtree(base / "demo" / "audit")  # re-made by every record

    frames = [s.image for s in get_source("builtin-photos", patch=256, n=3, seed=0, split="test")]
    (plain / "photo.png").write_bytes(encode_image(frames[0]))
    (plain / "photo.jpg").write_bytes(encode_image(frames[1], "JPEG", quality=92))
    (plain / "clip.mp4").write_bytes(encode_mp4([np.roll(f, 3 * k, axis=1) for f in frames for k in range(4)], fps=8))
    (plain / "tone.wav").write_bytes(_wav())
    (plain / "page.pdf").write_bytes(PDF)
    (plain / "truncated.png").write_bytes(encode_image(frames[2])[:300])
    (plain / "truncated.mp4").write_bytes((plain / "clip.mp4").read_bytes()[:2000])
    (plain / "empty.png").write_bytes(b"")
    (plain / "text.txt").write_text("not media\n")
    cli("stamp", *(str(plain / n) for n in ("photo.png", "clip.mp4", "tone.wav", "page.pdf")), "--out", str(stamped),
        "--keys", str(base / "demo" / "keys"), "--store", str(base / "demo" / "provenance.db"),
        "--generator", "compare-records", check=True)
    print(f"inputs in {base / 'inputs'}, demo in {base / 'demo'}")


# --------------------------------------------------------------------------- records


def _files(base: Path) -> list[Path]:
    fixtures = sorted(p for p in FIXTURES.rglob("*") if p.is_file())
    inputs = sorted(p for p in (base / "inputs").rglob("*") if p.is_file() and p.name != "provenance.db")
    return fixtures + inputs


def _lines(text: str) -> list[str]:
    return [json.dumps(_drop_timings(json.loads(x)), sort_keys=True, indent=1) for x in text.splitlines() if x.strip()]


def _drop_timings(x):
    if isinstance(x, dict):
        return {k: _drop_timings(v) for k, v in x.items() if k not in ("elapsed_s", "started", "finished", "wall_s",
                                                                    "images_per_s", "seconds", "scan_s", "load_s",
                                                                    "written_at")}
    if isinstance(x, list):
        return [_drop_timings(v) for v in x]
    return x


def record(base: Path, label: str) -> None:
    outdir = base / label
    if outdir.exists():
        shutil.rmtree(outdir)
    outdir.mkdir()
    store = base / "demo" / "provenance.db"
    files = [str(p) for p in _files(base)]
    with tempfile.TemporaryDirectory() as tmp:
        st = Path(tmp) / "provenance.db"
        shutil.copy(store, st)  # lookups only; a copy keeps the kept store untouched whatever happens
        runs = {
            "verify": ["verify", "--json", *files],
            "verify-store": ["verify", "--json", "--store", str(st), *files],
            "scan": ["scan", "--json", "--device", "cpu", "--full", *files],
            "scan-store": ["scan", "--json", "--device", "cpu", "--store", str(st), *files],
        }
        for name, args in runs.items():
            r = cli(*args)
            (outdir / f"{name}.jsonl").write_text("\n".join(_lines(r.stdout)) + "\n")
            (outdir / f"{name}.rc").write_text(f"{r.returncode}\n")
        html = Path(tmp) / "scan.html"
        cli("scan", "--device", "cpu", "--store", str(st), "--html", str(html), *files)
        (outdir / "scan.html").write_text(_html(html.read_text()) if html.exists() else "(no html)\n")
        audit = Path(tmp) / "audit"
        r = cli("audit", str(base / "demo" / "images"), "--out", str(audit), "--store", str(st), "--device", "cpu")
        (outdir / "audit.rc").write_text(f"{r.returncode}\n")
        (outdir / "audit-results.jsonl").write_text("\n".join(_lines((audit / "results.jsonl").read_text())) + "\n")
        for p in sorted(audit.rglob("*")):
            if p.is_file() and p.suffix in (".html", ".json") and p.name != "results.jsonl":
                text = p.read_text()
                text = _html(text) if p.suffix == ".html" else json.dumps(_drop_timings(json.loads(text)), indent=1,
                                                                          sort_keys=True)
                (outdir / ("audit-" + p.relative_to(audit).as_posix().replace("/", "_"))).write_text(
                    text.replace(tmp, "<tmp>"))
        for p in outdir.glob("*.jsonl"):
            p.write_text(p.read_text().replace(tmp, "<tmp>"))
    print(f"recorded {len(files)} files x {len(runs)} runs, an HTML scan report and an audit into {outdir}")


def _html(text: str) -> str:
    # clock times and durations written into reports
    text = re.sub(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)?", "<time>", text)
    text = re.sub(r"\b\d+(\.\d+)? ?(s|seconds|images/s|img/s)\b", "<dur>", text)
    return re.sub(r"<td>elapsed_s</td><td>[0-9.]+</td>", "<td>elapsed_s</td><td><dur></td>", text)


def _normal(p: Path) -> str:
    # applied again when comparing, so a record made before a normalisation was added still compares
    text = p.read_text()
    if p.suffix == ".html":
        return _html(text)
    if p.suffix == ".json":
        return json.dumps(_drop_timings(json.loads(text)), indent=1, sort_keys=True)
    return text


def diff(base: Path, a: str, b: str) -> int:
    da, db = base / a, base / b
    names = sorted({p.name for p in da.iterdir()} | {p.name for p in db.iterdir()})
    bad = 0
    for n in names:
        pa, pb = da / n, db / n
        ta, tb = (_normal(p).splitlines() if p.exists() else ["(missing)"] for p in (pa, pb))
        if ta != tb:
            bad += 1
            print(f"--- {n} differs")
            sys.stdout.writelines(x + "\n" for x in list(difflib.unified_diff(ta, tb, a, b, lineterm="", n=2))[:80])
        else:
            print(f"same: {n} ({len(ta)} lines)")
    print("IDENTICAL" if not bad else f"{bad} file(s) differ")
    return 1 if bad else 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("prepare").add_argument("base", type=Path)
    r = sub.add_parser("record")
    r.add_argument("base", type=Path)
    r.add_argument("label")
    d = sub.add_parser("diff")
    d.add_argument("base", type=Path)
    d.add_argument("a")
    d.add_argument("b")
    args = ap.parse_args()
    if args.cmd == "prepare":
        prepare(args.base)
    elif args.cmd == "record":
        record(args.base, args.label)
    else:
        return diff(args.base, args.a, args.b)
    return 0


if __name__ == "__main__":
    sys.exit(main())
