"""Scoring throughput: the engine vs a naive per-image loop, same network and weights.

Run:  python benchmarks/scoring.py [--n 1000] [--size 256] [--device auto] [--detector default]

On one set of N JPEGs (size x size, quality 90, written to a temp folder) it measures, in
one run, each phase in its own subprocess so peak memory is per phase:

- naive: per image, open with PIL, to tensor, normalise, one forward pass (how published
  detector demos score), with the same tiling and aggregation as the engine;
- engine: ScoringEngine (decode threads, tiles of many images per forward pass);
- scan: Scanner with every signal on (C2PA, metadata, watermarks, detector) on a subset.

It checks that naive and engine scores agree (max |difference|), prints a table and the
engine/naive ratio, and writes the results with machine, date and command to
benchmarks/results/scoring.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def make_images(folder: Path, n: int, size: int, seed: int = 0) -> list[str]:
    """JPEGs cut from the built-in photos (real content, so decoding costs what it should)."""
    from genvis_trust.datasets import get_source
    from genvis_trust.io import encode_image

    folder.mkdir(parents=True, exist_ok=True)
    src = get_source("builtin-photos", patch=size, n=n, seed=seed, scales=(1.0, 0.5))
    paths = []
    for i, s in enumerate(src):
        p = folder / f"{i:05d}.jpg"
        p.write_bytes(encode_image(s.image, "JPEG", quality=90))
        paths.append(str(p))
    return paths


def load_det(name: str, device: str):
    import torch

    from genvis_trust.detectors import Detector, list_bundled, load_detector

    if name in list_bundled() or Path(name).is_dir():
        return load_detector(name, device=device)
    torch.manual_seed(0)  # no bundled detector yet: a seeded network, same weights in every phase
    return Detector.create("cnn", device=device)


def phase(args) -> dict:
    paths = sorted(str(p) for p in Path(args.folder).glob("*.jpg"))
    from genvis_trust.devices import use_all_cores

    use_all_cores()
    det = load_det(args.detector, args.device)
    t0 = time.perf_counter()
    if args.phase == "naive":
        from genvis_trust.scoring import naive_scores

        scores = naive_scores(det, paths)
    elif args.phase == "engine":
        from genvis_trust.scoring import ScoringEngine

        eng = ScoringEngine(det, batch_size=args.batch or None)
        scores = [r.score.probability for r in eng.score_paths(paths)]
    else:
        from genvis_trust.scan import Scanner

        paths = paths[: args.scan_n]
        s = Scanner(det, check_stability=True, batch_size=args.batch or None)
        scores = [r.detector["probability"] if r.detector else None for r in s.scan(paths)]
        s.close()
    dt = time.perf_counter() - t0
    return {
        "phase": args.phase,
        "images": len(paths),
        "seconds": dt,
        "images_per_s": len(paths) / dt,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "scores": scores,
        "device": str(det.device),
        "detector": det.name,
        "tiles_per_image": det.max_tiles,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--scan-n", type=int, default=200, help="images for the all-signals scan phase")
    ap.add_argument("--batch", type=int, default=0, help="tiles per forward pass (0: the engine's default)")
    ap.add_argument("--repeats", type=int, default=3, help="runs per phase, interleaved; the median is reported")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--detector", default="default")
    ap.add_argument("--phase", choices=["naive", "engine", "scan"], help=argparse.SUPPRESS)
    ap.add_argument("--folder", help=argparse.SUPPRESS)
    ap.add_argument("--out", default=str(HERE / "results" / "scoring.json"))
    args = ap.parse_args()
    if args.phase:
        print(json.dumps(phase(args)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "imgs"
        t = time.time()
        make_images(folder, args.n, args.size)
        print(f"wrote {args.n} {args.size}x{args.size} JPEGs in {time.time() - t:.1f}s", file=sys.stderr)
        runs: dict[str, list[dict]] = {"naive": [], "engine": [], "scan": []}
        for _ in range(args.repeats):  # interleaved, so drifting machine load hits every phase alike
            for ph in runs:
                cmd = [sys.executable, __file__, "--phase", ph, "--folder", str(folder), "--device", args.device,
                       "--detector", args.detector, "--batch", str(args.batch), "--scan-n", str(args.scan_n)]
                out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
                runs[ph].append(json.loads(out))
                r = runs[ph][-1]
                print(f"{ph:7s} {r['images']:5d} images  {r['images_per_s']:8.1f} img/s  "
                      f"peak RSS {r['peak_rss_mb']:.0f} MB", file=sys.stderr)
        res = {ph: sorted(rs, key=lambda r: r["images_per_s"])[len(rs) // 2] for ph, rs in runs.items()}
        spread = {ph: [round(r["images_per_s"], 1) for r in rs] for ph, rs in runs.items()}
    diff = float(np.max(np.abs(np.array(res["naive"]["scores"]) - np.array(res["engine"]["scores"]))))
    ratio = res["engine"]["images_per_s"] / res["naive"]["images_per_s"]
    record = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {res['engine']['device']}",
        "command": "python benchmarks/scoring.py " + " ".join(sys.argv[1:]),
        "images": args.n,
        "size": args.size,
        "detector": res["engine"]["detector"],
        "tiles_per_image_max": res["engine"]["tiles_per_image"],
        "naive_img_s": round(res["naive"]["images_per_s"], 1),
        "engine_img_s": round(res["engine"]["images_per_s"], 1),
        "engine_vs_naive": round(ratio, 2),
        "scan_all_signals_img_s": round(res["scan"]["images_per_s"], 1),
        "scan_images": res["scan"]["images"],
        "max_score_difference": diff,
        "peak_rss_mb": {k: round(v["peak_rss_mb"]) for k, v in res.items()},
        "runs_img_s": spread,
        "repeats": args.repeats,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(record, indent=2) + "\n")
    print("\n| phase | images/s | peak RSS (MB) |\n|---|---|---|")
    print(f"| naive per-image loop | {record['naive_img_s']} | {record['peak_rss_mb']['naive']} |")
    print(f"| engine (batched, threaded decode) | {record['engine_img_s']} | {record['peak_rss_mb']['engine']} |")
    print(f"| scan, all signals ({record['scan_images']} images) | {record['scan_all_signals_img_s']} | {record['peak_rss_mb']['scan']} |")
    print(f"\nmedian of {args.repeats} interleaved runs per phase; all runs (img/s): {spread}")
    print(f"engine / naive = {ratio:.2f}x; max |score difference| = {diff:.2e}; {record['machine']}; {record['date']}")


if __name__ == "__main__":
    main()
