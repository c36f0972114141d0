"""The default detector's forward pass with its zero-shot member fed 16 sub-tiles a call vs all at once.

    python benchmarks/sub_batch.py --reps 7 --out benchmarks/results/sub-batch.json

64 random 128 px tiles through ``Detector.logits`` in the engine's CPU batch (16 tiles, so 64
sub-tiles for the 64 px member), alternating ``stack.SUB_BATCH`` = 16 (what scans use) and one
call per batch, in one process; median seconds per 64 tiles, the ratio, and whether the logits
are identical.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)

    from genvis_trust.detectors import load_detector
    from genvis_trust.detectors import stack as stack_mod

    det = load_detector("default", device="cpu")
    det.optimize_for_inference()
    tiles = np.random.default_rng(0).integers(0, 256, (64, 128, 128, 3), dtype=np.uint8)
    forms = {"sub_batch_16": 16, "one_call": 10**9}
    times: dict[str, list[float]] = {k: [] for k in forms}
    logits = {}
    for rep in range(args.reps + 1):  # the first round warms up, untimed
        for name, sub in forms.items():
            stack_mod.SUB_BATCH = sub
            t = time.perf_counter()
            logits[name] = det.logits(tiles, 16)
            if rep:
                times[name].append(time.perf_counter() - t)
    stack_mod.SUB_BATCH = 16
    med = {k: statistics.median(v) for k, v in times.items()}
    rep = {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
           "machine": f"{platform.machine()}, {os.cpu_count()} cores, CPU, torch threads {__import__('torch').get_num_threads()}",
           "command": "python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
           "median_s_per_64_tiles": {k: round(v, 4) for k, v in med.items()},
           "runs_s": {k: [round(x, 4) for x in v] for k, v in times.items()},
           "speedup": round(med["one_call"] / med["sub_batch_16"], 3),
           "logits_identical": bool(np.array_equal(logits["sub_batch_16"], logits["one_call"]))}
    print(json.dumps(rep, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(rep, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
