"""Does the sequential stability check answer as the exact one? Measured on real images.

    python benchmarks/stability_sequential.py --photos /tmp/exif-samples-jpg \
        --out benchmarks/results/stability-sequential

The scan's stability check scores three mildly perturbed copies of an image (JPEG 90, 0.9x
resize and back, blur 0.5) and calls the image ``uncertain`` when one of them lands on the
other side of the threshold. The sequential check (:func:`genvis_trust.detectors.evaluation.
sequential_copy_score`) reads each copy's tiles 16 at a time and stops once the copy's side is
clear by 4 standard errors. This script scores every copy of every image both ways with the
default detector and compares the answers, at the scan's threshold (0.5) and, to put many more
copies near a threshold than one folder has, at thresholds just beside each image's own p
(p +- 0.02, 0.05, 0.1): there the check is hardest.

Images (none from the sources reserved for evaluation):
- the scan-speed folder (``benchmarks/scan_speed.py``: 18 images at 1024x1024);
- camera JPEGs of ``--photos``, files of 200 kB and more (the run recorded: the ``jpg/`` folder
  of github.com/ianare/exif-samples at commit 5332a9c, every blob of it that the snapshot holds,
  17 such files; CC BY-SA 4.0 as a repository, most images from Wikimedia Commons each with
  its own licence; not kept in this repository), each whole and as up to four
  1024x1024 crops at native resolution.

Reported: answers compared (agreements, disagreements with their image, threshold and p's),
the share of tiles read, and how far an estimated copy's p is from its exact p.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))


def images(speed_folder: Path, photos: Path | None, side: int = 1024):
    from benchmarks.scan_speed import make_folder
    from genvis_trust.io import load_image

    for f in make_folder(speed_folder):
        yield f"speed/{f.name}", load_image(str(f)).array
    if photos is None:
        return
    for f in sorted(p for p in photos.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg") and p.stat().st_size >= 200_000):
        try:
            a = load_image(str(f)).array
        except Exception as e:  # a broken sample (exif-samples keeps some on purpose)
            print(f"skipped {f.name}: {e}", file=sys.stderr)
            continue
        name = f.relative_to(photos).as_posix()
        yield f"{name} (whole)", a
        h, w = a.shape[:2]
        k = 0
        for y in range(0, h - side + 1, side):
            for x in range(0, w - side + 1, side):
                if k < 4:
                    yield f"{name} (crop {y},{x})", np.ascontiguousarray(a[y : y + side, x : x + side])
                    k += 1


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--photos", default=None, help="folder of camera JPEGs (searched recursively)")
    ap.add_argument("--speed-folder", default="/tmp/genvis-scan-speed-1024")
    ap.add_argument("--out", default=None, help="path stem: writes STEM.json and STEM.md")
    args = ap.parse_args(argv)

    from genvis_trust.detectors import load_detector
    from genvis_trust.detectors.evaluation import (
        MILD_PERTURBATIONS,
        SEQUENTIAL_CHUNK,
        SEQUENTIAL_SIGMAS,
        sequential_copy_score,
    )

    det = load_detector("default", device="cpu")
    det.optimize_for_inference()
    rows, t0 = [], time.time()
    for name, img in images(Path(args.speed_folder), Path(args.photos) if args.photos else None):
        base = det.score(img)
        copies = {k: f(img) for k, f in MILD_PERTURBATIONS.items()}
        exact = {k: s.probability for k, s in zip(copies, det.score_many(list(copies.values()), 16), strict=True)}
        p = base.probability
        thresholds = sorted({0.5, *(round(min(0.99, max(0.01, p + d)), 4) for d in (-0.1, -0.05, -0.02, 0.02, 0.05, 0.1))})
        for thr in thresholds:
            seq, read = {}, {}
            for k, c in copies.items():
                seq[k], used, n = sequential_copy_score(det, c, base, threshold=thr, batch_size=16)
                read[k] = [used, n]
            side = p >= thr
            rows.append({
                "image": name, "size": list(img.shape[:2]), "p": round(p, 6), "head": base.head, "threshold": thr,
                "exact": {k: round(v, 6) for k, v in exact.items()}, "sequential": {k: round(v, 6) for k, v in seq.items()},
                "tiles": read,
                "exact_uncertain": any((v >= thr) != side for v in exact.values()),
                "sequential_uncertain": any((v >= thr) != side for v in seq.values()),
                "copy_sides_agree": all((seq[k] >= thr) == (exact[k] >= thr) for k in copies),
            })
        print(f"{len(rows)} rows, {name}: p={p:.3f} ({time.time() - t0:.0f} s)", file=sys.stderr, flush=True)

    copies_n = sum(len(r["tiles"]) for r in rows)
    read = sum(u for r in rows for u, _ in r["tiles"].values())
    total = sum(n for r in rows for _, n in r["tiles"].values())
    est = [abs(r["sequential"][k] - r["exact"][k]) for r in rows for k, (u, n) in r["tiles"].items() if u < n]
    at_half = [r for r in rows if r["threshold"] == 0.5]
    summary = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, CPU",
        "command": "python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
        "chunk": SEQUENTIAL_CHUNK, "sigmas": SEQUENTIAL_SIGMAS,
        "images": len(at_half), "answers": len(rows), "copies": copies_n,
        "answers_agree": sum(r["exact_uncertain"] == r["sequential_uncertain"] for r in rows),
        "copy_sides_agree": sum(r["copy_sides_agree"] for r in rows),
        "at_threshold_0.5": {"answers": len(at_half),
                             "agree": sum(r["exact_uncertain"] == r["sequential_uncertain"] for r in at_half),
                             "uncertain_exact": sum(r["exact_uncertain"] for r in at_half)},
        "uncertain_exact": sum(r["exact_uncertain"] for r in rows),
        "tiles_read_share": round(read / max(total, 1), 4),
        "estimated_copies": len(est),
        "estimate_abs_error": {"median": round(float(np.median(est)), 5) if est else None,
                               "p95": round(float(np.quantile(est, 0.95)), 5) if est else None,
                               "max": round(float(max(est)), 5) if est else None},
        "disagreements": [r for r in rows if r["exact_uncertain"] != r["sequential_uncertain"]],
        "wall_s": round(time.time() - t0, 1),
    }
    print(json.dumps({k: v for k, v in summary.items() if k != "disagreements"}, indent=1))
    if args.out:
        stem = Path(args.out)
        stem.parent.mkdir(parents=True, exist_ok=True)
        stem.with_suffix(".json").write_text(json.dumps({**summary, "rows": rows}, separators=(",", ":")) + "\n")
        s = summary
        lines = [
            "# The sequential stability check against the exact one", "",
            f"{s['date']}; {s['machine']}; `{s['command']}`", "",
            f"Default detector; {s['images']} images; each image's three perturbed copies scored whole (exact) and "
            f"sequentially ({s['chunk']} tiles a step, stop at {s['sigmas']:g} standard errors), at threshold 0.5 "
            f"and at p +- 0.02 / 0.05 / 0.1 of each image: {s['answers']} answers, {s['copies']} copies.", "",
            "| | count |", "|---|---|",
            f"| answers (uncertain or not) equal to the exact check's | **{s['answers_agree']} / {s['answers']}** |",
            f"| ... at the scan's threshold 0.5 | {s['at_threshold_0.5']['agree']} / {s['at_threshold_0.5']['answers']} |",
            f"| every copy on the same side as exactly scored | {s['copy_sides_agree']} / {s['answers']} |",
            f"| exact answers that were 'uncertain' | {s['uncertain_exact']} |",
            f"| share of the copies' tiles read | {s['tiles_read_share']:.1%} |",
            f"| copies whose p is an estimate | {s['estimated_copies']} of {s['copies']} |",
            f"| estimate's error in p: median / p95 / max | {s['estimate_abs_error']['median']} / "
            f"{s['estimate_abs_error']['p95']} / {s['estimate_abs_error']['max']} |", "",
        ]
        if s["disagreements"]:
            lines += ["Disagreements:", ""] + [f"- {r['image']} at threshold {r['threshold']}: p {r['p']}, exact "
                                               f"{r['exact']}, sequential {r['sequential']}, tiles {r['tiles']}"
                                               for r in s["disagreements"]]
        stem.with_suffix(".md").write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
