"""Watermark readers on the verify path, each against a baseline measured in the same run.

    python benchmarks/watermark_transform.py                 # prints Markdown, writes JSON
    python benchmarks/watermark_transform.py --reps 15 --out benchmarks/results/watermark_transform.json

Input: one 1024x1024 JPEG (quality 90), a photograph enlarged from scikit-image's
astronaut, stamped by the toolkit (dwtDctSvd mark + signed C2PA manifest + store record).
Ratios (issue 10 targets):

- ``verify`` with every signal (C2PA, metadata, both default backends, known generators'
  marks, the store) over a Pillow decode of the same JPEG (target <= 5x);
- every known generator's mark together (SDXL, SD v1, SD v2, both channel orders) over
  invisible-watermark's own single SDXL read, ``WatermarkDecoder('bits', 48).decode(bgr,
  'dwtDct')`` (target <= 2x).

Every timing is the median of ``--reps`` runs, the phases interleaved so that load from
other processes on a shared machine falls on all of them alike.
"""

from __future__ import annotations

import argparse
import datetime
import io
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _machine() -> str:
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{platform.machine()} {cpu}, {os.cpu_count()} CPUs visible, Python {platform.python_version()}"


def make_input(tmp: Path) -> tuple[bytes, object, str]:
    import cv2
    from skimage import data

    from genvis_trust.provenance.keys import init_keys, load_signing_material
    from genvis_trust.provenance.stamp import stamp_array
    from genvis_trust.provenance.store import ProvenanceStore

    rgb = cv2.resize(data.astronaut(), (1024, 1024), interpolation=cv2.INTER_CUBIC)
    init_keys(tmp / "keys")
    store = ProvenanceStore(tmp / "p.db")
    stamp_array(rgb, tmp / "x.jpg", store=store, material=load_signing_material(tmp / "keys"), fmt="JPEG",
                quality=90, generator="bench")
    return (tmp / "x.jpg").read_bytes(), store, (tmp / "keys" / "ca.cert.pem").read_text()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=9)
    ap.add_argument("--out", default=None, help="JSON file to write")
    ap.add_argument("--label", default="", help="free text recorded with the run (e.g. the commit)")
    args = ap.parse_args(argv)

    from imwatermark import WatermarkDecoder
    from PIL import Image

    from genvis_trust.io import decode_image
    from genvis_trust.provenance.known_generators import check_known_marks
    from genvis_trust.provenance.verify import verify_bytes
    from genvis_trust.provenance.watermarks import detect

    tmp = Path(tempfile.mkdtemp())
    data, store, anchors = make_input(tmp)
    rgb = decode_image(data).array
    bgr = np.ascontiguousarray(rgb[..., ::-1])

    def pillow_decode():
        with Image.open(io.BytesIO(data)) as im:
            im.load()

    phases = {
        "pillow_decode": pillow_decode,
        "verify_every_signal": lambda: verify_bytes(data, name="x.jpg", store=store, trust_anchors_pem=anchors),
        "library_sdxl_read": lambda: WatermarkDecoder("bits", 48).decode(bgr, "dwtDct"),
        "known_marks_all": lambda: check_known_marks([rgb]),
        "dwtDctSvd_detect": lambda: detect(rgb, "dwtDctSvd"),
        "dwtDct_detect": lambda: detect(rgb, "dwtDct"),
    }
    for fn in phases.values():  # warm-up: imports, the store's connection, library caches
        fn()
    times: dict[str, list[float]] = {k: [] for k in phases}
    for _ in range(args.reps):
        for k, fn in phases.items():
            t = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t)
    med = {k: statistics.median(v) for k, v in times.items()}
    rep = verify_bytes(data, name="x.jpg", store=store, trust_anchors_pem=anchors)
    out = {
        "machine": _machine(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": "python benchmarks/watermark_transform.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "label": args.label,
        "input": f"1024x1024 JPEG q90, {len(data)} bytes, stamped (dwtDctSvd + C2PA + store)",
        "reps": args.reps,
        "median_s": med,
        "all_s": times,
        "verify_over_pillow_decode": med["verify_every_signal"] / med["pillow_decode"],
        "known_marks_over_library_sdxl": med["known_marks_all"] / med["library_sdxl_read"],
        "verify_signals": [e.kind + ":" + e.indicates for e in rep.evidence],
    }
    print(f"# Watermark readers on the verify path\n\n{out['date']} · {out['machine']} · `{out['command']}`"
          f"{' · ' + args.label if args.label else ''}\n")
    print(f"Input: {out['input']}; median of {args.reps} interleaved runs.\n")
    print("| phase | median |\n|---|---|")
    for k, v in med.items():
        print(f"| {k} | {v * 1e3:.1f} ms |")
    print(f"\nverify (every signal) / Pillow decode = **{out['verify_over_pillow_decode']:.2f}x** (target <= 5x)")
    print(f"all known marks / library's single SDXL read = **{out['known_marks_over_library_sdxl']:.2f}x** (target <= 2x)")
    print(f"verify evidence: {', '.join(out['verify_signals'])}")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
