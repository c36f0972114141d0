"""How long the audit report takes to write, for 1,000 and 10,000 records.

A folder of real-size images is synthesized once (``--images``): photographs' stand-ins at
2048x1536 (JPEG 90, smooth content plus sensor-like noise) and generated-image stand-ins at
1024x1024 (PNG), ``--distinct`` different files. Records are synthesized as a scan writes them
(schema 1.1: verdicts of every kind, a detector score with the tile map the scan records, an
out-of-domain caveat on some rows, errors, skipped files); the 10,000-record set names each
image ten times through hard links, each record with its own sha256, so every row's pictures
are made (none is reused from another row).

Then ``write_summary`` (the report: index page, a page per file, thumbnails, heat maps, charts)
runs in a fresh process per size, timed; with ``--baseline-src`` the same records go through an
older checkout's report code too (its heat maps come from detector passes, ``--heatmaps`` 200).
A scan of ``--scan-sample`` of the images (every signal, the default detector) gives the
seconds per image that put the report's time beside an audit's.

    nice -n 10 taskset -c 0 python benchmarks/audit_report.py --work /tmp/a22-bench \\
        --baseline-src /tmp/a22-base --out benchmarks/results/audit-report.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parents[1]


def make_images(folder: Path, n: int, seed: int = 0) -> list[Path]:
    import cv2

    from genvis_trust.io import encode_image

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    rng = np.random.default_rng(seed)
    for i in range(n):
        photo = i % 5 < 3
        name = folder / (f"photo{i:05d}.jpg" if photo else f"gen{i:05d}.png")
        paths.append(name)
        if name.exists():
            continue
        h, w = (1536, 2048) if photo else (1024, 1024)
        small = rng.integers(0, 256, (12, 16, 3) if photo else (8, 8, 3)).astype(np.uint8)
        img = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC).astype(np.float32)
        img += rng.normal(0, 4 if photo else 1.5, img.shape).astype(np.float32)
        data = encode_image(np.clip(img, 0, 255).astype(np.uint8), "JPEG" if photo else "PNG", quality=90)
        name.write_bytes(data)
    return paths


def tile_map(h: int, w: int, rng) -> dict:
    ys = list(np.linspace(0, h - 128, 8).astype(int))
    xs = list(np.linspace(0, w - 128, 8).astype(int))
    return {"p": [[round(float(v), 3) for v in rng.beta(1.2, 3, len(xs))] for _ in ys], "tile": 128,
            "y": [int(y) for y in ys], "x": [int(x) for x in xs]}


def make_records(root: Path, images: list[Path], n: int, seed: int = 0) -> list[dict]:
    """``n`` records over ``images`` (hard links named per record when n exceeds them)."""
    rng = np.random.default_rng(seed)
    ood = ("outside what it was trained on: image is 1024x1024 with large exactly-flat areas, unlike the "
           "photographs the detector was trained on")
    kinds = ["no_evidence"] * 5 + ["likely_generated"] * 2 + ["generated", "uncertain", "error"]
    recs = []
    for i in range(n):
        src = images[i % len(images)]
        if n > len(images):
            name = root / f"set{i // len(images):02d}" / src.name
            name.parent.mkdir(parents=True, exist_ok=True)
            if not name.exists():
                os.link(src, name)
        else:
            name = root / src.name
            name.parent.mkdir(parents=True, exist_ok=True)
            if not name.exists():
                os.link(src, name)
        rel = name.relative_to(root).as_posix()
        photo = src.suffix == ".jpg"
        h, w = (1536, 2048) if photo else (1024, 1024)
        v = kinds[i % len(kinds)]
        if i % 97 == 0:
            v = "skipped"
        p = float({"no_evidence": rng.uniform(0, 0.45), "likely_generated": rng.uniform(0.55, 1),
                   "generated": rng.uniform(0.3, 1), "uncertain": rng.uniform(0.3, 0.7)}.get(v, 0.0))
        ev = [{"kind": "c2pa", "strength": "cryptographic", "summary": "no C2PA manifest", "indicates": "none",
               "details": {"status": "none"}},
              {"kind": "metadata", "strength": "declared", "summary": "no generator markers in the metadata",
               "indicates": "none", "details": {}},
              {"kind": "watermark", "strength": "statistical", "summary": "no watermark found", "indicates": "none",
               "details": {}}]
        det = None
        if v in ("no_evidence", "likely_generated", "generated", "uncertain"):
            text = f"detector default: p(generated)={p:.2f} (calibrated, 64 tiles)"
            details = {"probability": round(p, 6), "calibrated": True, "detector": "default"}
            if v == "likely_generated" and not photo:
                text += "; " + ood
            if v == "no_evidence":
                details["sensitivity"] = {"orig": {"tpr_pooled": 0.035, "real_fpr": 0.042}, "generators": 19}
            ev.append({"kind": "detector", "strength": "learned", "summary": text,
                       "indicates": "generated" if p >= 0.5 else "none", "details": details})
            det = {"probability": round(p, 6), "logit": 0.0, "calibrated": True, "detector": "default", "tiles": 64,
                   "grid": [8, 8], "aggregation": "mean", "notes": [], "out_of_domain": [],
                   "tile_map": tile_map(h, w, rng)}
        if v == "generated":
            ev.append({"kind": "watermark", "strength": "statistical", "indicates": "generated",
                       "summary": "genvis-trust watermark (dwtDctSvd) from issuer 0x6cb, record 1: generative content",
                       "details": {}})
        rec = {"schema_version": "1.1", "input": rel, "verdict": v, "flags": ["tampered"] if i % 211 == 5 else [],
               "summary": v.replace("_", " "), "evidence": ev if v not in ("error", "skipped") else [],
               "image": {"width": w, "height": h, "format": "JPEG" if photo else "PNG",
                         "sha256": hashlib.sha256(f"{rel}-{i}".encode()).hexdigest()},
               "detector": det, "error": None}
        if v == "error":
            rec["error"] = {"code": "truncated", "message": "file ends before its image data", "path": rel}
        if v == "skipped":
            rec["skipped"] = {"code": "text", "message": "text file, not media"}
        recs.append(rec)
    return recs


_TIMED = """
import json, sys, time
from pathlib import Path
t0 = time.time()
from genvis_trust.audit import RESULTS, summarize, write_summary
from genvis_trust.scan import Scanner
det = Scanner(device="cpu", provenance=False).detector
out, root = Path(sys.argv[1]), Path(sys.argv[2])
summary = summarize(out / RESULTS, root=root)
t1 = time.time()
write_summary(out, summary, detector=det, heatmaps=200)
t2 = time.time()
print(json.dumps({"report_s": round(t2 - t1, 2), "setup_s": round(t1 - t0, 2)}))
"""


def pictures_at_scan_time(out: Path, root: Path, recs: list[dict]) -> dict:
    """What the audit now does as each image is scanned: thumbnail, page image and tile heat
    map from the decoded pixels (decoding is the scan's, so it is not timed here)."""
    from genvis_trust.io import load_image
    from genvis_trust.report.audit_report import REPORT_DIR, pictures_from_pixels

    pages = out / REPORT_DIR
    spent, n = 0.0, 0
    made: dict[tuple[int, int], str] = {}  # (device, inode) of a source file -> the key its pictures got
    for rec in recs:
        if rec.get("error") or rec.get("skipped"):
            continue
        st = os.stat(root / rec["input"])
        key = rec["image"]["sha256"][:24]
        if (st.st_dev, st.st_ino) in made and len(recs) > 2000:
            # the same file seen again under another name (the 10,000 set): its pictures are
            # linked under this record's key instead of being made again; timed per made image
            first = made[(st.st_dev, st.st_ino)]
            for sub, suffix in (("thumbs", ".jpg"), ("thumbs", "-page.jpg"), ("heat", "-tiles.jpg"),
                                ("heat", "-tiles.jpg.json")):
                src = pages / sub / f"{first}{suffix}"
                if src.exists():
                    os.link(src, pages / sub / f"{key}{suffix}")
            continue
        arr = load_image(root / rec["input"]).array
        t = time.perf_counter()
        pictures_from_pixels(pages, rec, arr)
        spent += time.perf_counter() - t
        n += 1
        made[(st.st_dev, st.st_ino)] = key
    return {"images": n, "total_s": round(spent, 2), "ms_per_image": round(1000 * spent / max(n, 1), 1)}


def time_report(src: Path, out: Path, root: Path, recs: list[dict], timeout: float, at_scan: bool = False) -> dict:
    import shutil

    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    scan_side = pictures_at_scan_time(out, root, recs) if at_scan else None
    (out / "results.jsonl").write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in recs))
    env = {**os.environ, "PYTHONPATH": str(src)}
    try:
        r = subprocess.run([sys.executable, "-c", _TIMED, str(out), str(root)], capture_output=True, text=True,
                           timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return {"report_s": None, "note": f"did not finish within {timeout:.0f} s"}
    if r.returncode != 0:
        return {"report_s": None, "note": r.stderr[-1500:]}
    res = json.loads(r.stdout.strip().splitlines()[-1])
    res["index_bytes"] = (out / "report.html").stat().st_size
    if scan_side is not None:
        res["pictures_at_scan_time"] = scan_side
    return res


def scan_seconds_per_image(images: list[Path], k: int) -> dict:
    from genvis_trust.scan import Scanner

    sample = [str(p) for p in images[:k]]
    s = Scanner(device="cpu")
    try:
        t0 = time.time()
        list(s.scan(sample[:1]))  # warm-up (first forward pass set-up)
        t1 = time.time()
        recs = list(s.scan(sample[1:]))
        t2 = time.time()
    finally:
        s.close()
    return {"images": len(sample) - 1, "s_per_image": round((t2 - t1) / max(1, len(sample) - 1), 3),
            "first_s": round(t1 - t0, 2), "verdicts": sorted({r.verdict for r in recs})}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, default=Path("/tmp/genvis-report-bench"))
    ap.add_argument("--distinct", type=int, default=1000)
    ap.add_argument("--sizes", default="100,1000,10000")
    ap.add_argument("--baseline-src", type=Path, default=None, help="an older checkout's root, for before/after")
    ap.add_argument("--baseline-sizes", default="100")
    ap.add_argument("--baseline-timeout", type=float, default=1800)
    ap.add_argument("--report-pass-sizes", default="100,1000", help="sizes also timed with the pictures made by the report")
    ap.add_argument("--scan-sample", type=int, default=12)
    ap.add_argument("--out", type=Path, default=HERE / "benchmarks" / "results" / "audit-report.json")
    a = ap.parse_args()

    t0 = time.time()
    images = make_images(a.work / "images", a.distinct)
    result = {"distinct_images": a.distinct, "images_s": round(time.time() - t0, 1), "cpu_affinity":
              sorted(os.sched_getaffinity(0)), "runs": []}
    print(f"images ready ({a.distinct}) in {result['images_s']} s", file=sys.stderr)

    def save() -> None:  # after every step, so a long run's finished parts are kept
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps(result, indent=2) + "\n")

    sizes = [int(x) for x in a.sizes.split(",")]
    for n in sizes:
        if a.scan_sample and n >= 1000 and "scan" not in result:
            result["scan"] = scan_seconds_per_image(images, a.scan_sample)  # before the longest run
            print(result["scan"], file=sys.stderr)
            save()
        root = a.work / f"root{n}"
        recs = make_records(root, images, n)
        if a.baseline_src and str(n) in a.baseline_sizes.split(","):
            r = time_report(a.baseline_src, a.work / f"base{n}", root, recs, timeout=a.baseline_timeout)
            result["runs"].append({"code": "baseline", "records": n, **r})
            print(result["runs"][-1], file=sys.stderr)
            save()
        if str(n) in a.report_pass_sizes.split(","):  # pictures made by the report, in its parallel pass
            r = time_report(HERE, a.work / f"out{n}", root, recs, timeout=3600)
            result["runs"].append({"code": "this", "pictures": "report pass", "records": n, **r})
            print(result["runs"][-1], file=sys.stderr)
            save()
        # the audit's path: pictures made from the scan's decoded pixels, the report renders pages
        r = time_report(HERE, a.work / f"scanpics{n}", root, recs, timeout=3600, at_scan=True)
        result["runs"].append({"code": "this", "pictures": "at scan time", "records": n, **r})
        print(result["runs"][-1], file=sys.stderr)
        save()


if __name__ == "__main__":
    main()
