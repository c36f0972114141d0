"""What a new default detector costs per image against the one it replaces, in one run.

    python benchmarks/default_cost.py --baseline OLD_DETECTOR_FOLDER [--detector default] [--n 16] [--size 1024]

Both detectors score the same N synthetic photographs (smooth gradients plus
sensor-like noise, ``size`` x ``size``) whole, as ``scan`` does (tiling, optimised CPU graph,
aggregation, domain check); rounds are interleaved and the median per detector is kept. The
ratio new/old is the result; absolute times depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np


def photos(n: int, size: int) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:size, 0:size] / size
    out = []
    for i in range(n):
        base = np.stack([np.sin(6 * x + i), np.cos(5 * y - i), np.sin(4 * (x + y) + 2 * i)], -1) * 90 + 128
        out.append(np.clip(base + rng.normal(0, 6, base.shape), 0, 255).astype(np.uint8))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--baseline", required=True, help="the detector replaced (an artifact folder)")
    ap.add_argument("--detector", default="default")
    ap.add_argument("--n", type=int, default=16)
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default="benchmarks/results/default_cost.json")
    args = ap.parse_args(argv)
    from genvis_trust.detectors import load_detector
    from genvis_trust.devices import use_all_cores

    threads = use_all_cores()
    dets = {"baseline": load_detector(args.baseline, device="cpu"), "new": load_detector(args.detector, device="cpu")}
    for d in dets.values():
        d.optimize_for_inference()
    imgs = photos(args.n, args.size)
    times: dict[str, list[float]] = {k: [] for k in dets}
    for _ in range(args.repeats):
        for k, d in dets.items():
            t0 = time.perf_counter()
            d.score_many(imgs, batch_size=16)
            times[k].append(time.perf_counter() - t0)
    med = {k: float(np.median(v)) for k, v in times.items()}
    rep = {"benchmark": "default detector cost", "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
           "machine": f"{platform.machine()}, {os.cpu_count()} cores visible, {threads} torch threads, CPU",
           "command": "python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
           "images": args.n, "size": args.size, "tiles_per_image": dets["new"].score(imgs[0]).tiles,
           "median_s": med, "images_per_s": {k: args.n / v for k, v in med.items()},
           "ratio_new_over_baseline_time": med["new"] / med["baseline"],
           "members": {k: [s["family"] for s in (d.net_config.get("members") or [{"family": d.family}])] for k, d in dets.items()}}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(rep, indent=1) + "\n")
    print(json.dumps(rep, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
