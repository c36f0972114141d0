"""Frame throughput of a video scan with every signal, against decoding alone, in the same run.

    python benchmarks/video.py                                  # prints Markdown, writes JSON
    python benchmarks/video.py --reps 3 --out benchmarks/results/video.json

Input: a 1280x720 H.264 clip (libx264 CRF 18, 30 fps, ``--seconds`` long) panning across
scikit-image's astronaut photograph enlarged to 1440x1440, with one cut to a second
photograph (coffee) halfway, so scene-cut sampling has something to find.

Phases (each the median of ``--reps`` runs, interleaved so that load from other processes
falls on all of them alike):

- ``decode``: PyAV decodes every frame to an RGB array (the baseline: frames/s);
- ``scan N``: :class:`genvis_trust.scan.Scanner` with every signal (C2PA and metadata on
  the container; watermarks, known generators' marks, the store and the bundled detector
  on each examined frame) sampling ``N`` frames: examined frames/s, and its ratio to the
  decode baseline. ``N`` from ``--frames`` (default: 16, the scan default, and every frame).

The scan's time includes its one sequential decode of the whole clip (for scene cuts);
the detector is loaded once, before timing.
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path


def _machine() -> str:
    sys.path.insert(0, str(Path(__file__).parent))
    from watermark_transform import _machine as cpu_and_python

    try:
        import torch

        if torch.cuda.is_available():
            return f"{cpu_and_python()}, GPU {torch.cuda.get_device_name(0)}"
    except ImportError:
        pass
    return cpu_and_python()


def make_clip(seconds: float, fps: int = 30) -> bytes:
    import cv2
    from skimage import data

    from genvis_trust.video import encode_mp4

    a = cv2.resize(data.astronaut(), (1440, 1440), interpolation=cv2.INTER_CUBIC)
    b = cv2.resize(data.coffee(), (1440, 1080), interpolation=cv2.INTER_CUBIC)
    n = int(seconds * fps)
    frames = []
    for k in range(n):
        src = a if k < n // 2 else b
        y = int((src.shape[0] - 720) * k / max(1, n - 1))
        x = int((src.shape[1] - 1280) * k / max(1, n - 1))
        frames.append(src[y : y + 720, x : x + 1280])
    return encode_mp4(frames, fps=fps, crf=18)


def decode_all(path: str) -> int:
    import av

    n = 0
    with av.open(path) as c:
        s = c.streams.video[0]
        s.thread_type = "AUTO"
        for f in c.decode(s):
            f.to_ndarray(format="rgb24")
            n += 1
    return n


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=2.0, help="clip length (30 fps)")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--frames", default="16,all", help="frames examined per scan configuration, comma-separated")
    ap.add_argument("--out", type=Path, default=None, help="JSON results (and a .md beside it)")
    args = ap.parse_args(argv)

    from genvis_trust.scan import Scanner
    from genvis_trust.video import FrameSampling, VideoOptions

    tmp = Path(tempfile.mkdtemp(prefix="gvt-bench-video-"))
    clip = tmp / "clip720p.mp4"
    clip.write_bytes(make_clip(args.seconds))
    n_frames = decode_all(str(clip))
    counts = [n_frames if c == "all" else int(c) for c in args.frames.split(",")]
    configs = {f"scan {c}" + (" (every frame)" if c == n_frames else ""): FrameSampling(frames=c) for c in counts}
    scanners = {k: Scanner("default", device=args.device, video=VideoOptions(sampling=v)) for k, v in configs.items()}
    warm = tmp / "warm.mp4"  # warm-up on a short clip: first forward pass, lazy imports
    warm.write_bytes(make_clip(2 / 30))
    for s in scanners.values():
        list(s.scan([str(warm)]))
    print(f"clip: {n_frames} frames; timing {args.reps} rep(s)", file=sys.stderr, flush=True)
    times: dict[str, list[float]] = {"decode": [], **{k: [] for k in configs}}
    examined: dict[str, int] = {}
    verdicts: dict[str, str] = {}
    for _ in range(args.reps):
        t = time.perf_counter()
        decode_all(str(clip))
        times["decode"].append(time.perf_counter() - t)
        for k, s in scanners.items():
            t = time.perf_counter()
            [r] = list(s.scan([str(clip)]))
            times[k].append(time.perf_counter() - t)
            examined[k], verdicts[k] = r.video["frames_examined"], r.verdict
            print(f"{k}: {times[k][-1]:.1f} s", file=sys.stderr, flush=True)
    for s in scanners.values():
        s.close()
    dec_fps = n_frames / statistics.median(times["decode"])
    rows = [{"phase": "decode (baseline)", "frames": n_frames, "median_s": round(statistics.median(times["decode"]), 3),
             "frames_per_s": round(dec_fps, 1), "ratio_to_decode": 1.0, "runs_s": [round(x, 3) for x in times["decode"]]}]
    for k in configs:
        med = statistics.median(times[k])
        fps = examined[k] / med
        rows.append({"phase": k, "frames": examined[k], "median_s": round(med, 3), "frames_per_s": round(fps, 2),
                     "ratio_to_decode": round(fps / dec_fps, 4), "verdict": verdicts[k],
                     "runs_s": [round(x, 3) for x in times[k]]})
    result = {
        "benchmark": "video frame throughput",
        "date": datetime.date.today().isoformat(),
        "machine": _machine(),
        "device": args.device,
        "command": "python benchmarks/video.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "clip": {"width": 1280, "height": 720, "fps": 30, "frames": n_frames, "codec": "libx264 crf 18",
                 "bytes": clip.stat().st_size},
        "reps": args.reps,
        "rows": rows,
    }
    md = [f"# Video frame throughput ({result['date']})", "",
          f"Machine: {result['machine']}; device `{args.device}`. Command: `{result['command']}`.",
          f"Clip: 1280x720 H.264 (CRF 18), 30 fps, {n_frames} frames. Median of {args.reps} interleaved runs.", "",
          "| phase | frames | median s | frames/s | ratio to decode |", "|---|---|---|---|---|"]
    for r in rows:
        md.append(f"| {r['phase']} | {r['frames']} | {r['median_s']} | {r['frames_per_s']} | {r['ratio_to_decode']} |")
    text = "\n".join(md) + "\n"
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
        args.out.with_suffix(".md").write_text(text)
    return result


if __name__ == "__main__":
    main()
