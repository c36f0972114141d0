"""Survival of a stamped video's watermark through an H.264 re-encode.

    python benchmarks/video_watermark.py --out benchmarks/results/video_watermark.json

Clips: one per photograph shipped with scikit-image and scikit-learn (astronaut, coffee,
chelsea, rocket, motorcycle, china, flower), 24 frames at 12 fps of a window panning 2 px a
frame across it (``--size``, default 384x256). Each is stamped by :func:`stamp_video`
(dwtDctSvd in every frame, H.264 CRF 18, signed C2PA manifest, store record), then
re-encoded with libx264 at each ``--crf`` (23: x264's default, an ordinary bitrate; also
28, a low one) and read back as ``verify`` reads a video.

Before and after, in one run: each clip is stamped twice, with ``dwtDctSvd`` (step 36, what
``stamp`` wrote before) and with ``dwtDctSvdVideo`` (step 48, what it writes now), and each
re-encode is read three ways: the frames' hard bits by majority (the pooling before: computed
here from the frames' bits), their soft scores averaged (the pooling now: what
``verify_video`` reports), both over ``--frames`` (16) evenly spread frames, and the soft
pooling over every frame of the clip.

Reported per stamp, re-encode and pooling: the stamps whose payload (issuer and record id) is
recovered (7 clips times ``--repeats`` stamps, each with its own record id, so its own payload
bits), the median bits the pooled reading shares with the nearest codeword (0: none within
the code's reach) and the examined frames that decode it alone; per stamp, the marked frames'
PSNR.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def photographs() -> dict[str, np.ndarray]:
    from skimage import data
    from sklearn.datasets import load_sample_image

    return {"astronaut": data.astronaut(), "coffee": data.coffee(), "chelsea": data.chelsea(), "rocket": data.rocket(),
            "motorcycle": data.stereo_motorcycle()[0], "china": load_sample_image("china.jpg"),
            "flower": load_sample_image("flower.jpg")}


def clip(img: np.ndarray, w: int, h: int, n: int = 24) -> list[np.ndarray]:
    import cv2

    if img.shape[0] < h or img.shape[1] < w + 2 * n:
        f = max(h / img.shape[0], (w + 2 * n) / img.shape[1])
        img = cv2.resize(img, (int(img.shape[1] * f) + 1, int(img.shape[0] * f) + 1), interpolation=cv2.INTER_CUBIC)
    y = (img.shape[0] - h) // 2
    return [np.ascontiguousarray(img[y : y + h, 2 * k : 2 * k + w]) for k in range(n)]


POOLINGS = ("majority", "soft", "soft_all_frames")


def _read(data: bytes, name: str, backend: str, frames: int, record_id: int, issuer: int) -> dict:
    from genvis_trust.provenance.payload import get_codec
    from genvis_trust.video import FrameSampling, VideoOptions, verify_video

    codec = get_codec(64)
    opts = VideoOptions(sampling=FrameSampling(frames=frames, scene_cuts=False))
    rep, frame_reports, _ = verify_video(data, name=name, options=opts, backends=(backend,), known_generators=False)
    wm = next(w for w in rep.watermarks if w["backend"] == backend)

    def right(payload: dict, valid: bool) -> bool:
        return bool(valid and payload.get("record_id") == record_id % codec.short_id_modulus
                    and payload.get("issuer_id") == issuer)

    soft = {"recovered": right(wm.get("payload") or {}, wm["detected"]), "pooled_bits": wm["matched_bits"],
            "frames_detected": wm["frames_detected"], "frames_read": wm["frames_read"]}
    bits = [np.frombuffer(w["bits"].encode(), np.uint8) - 48 for r in frame_reports for w in r.watermarks
            if w["backend"] == backend and w.get("bits")]
    dec = codec.decode((np.mean(bits, axis=0) > 0.5).astype(np.uint8))  # the bitwise majority read before
    majority = {"recovered": right(dec.to_dict(), dec.valid),
                "pooled_bits": None if dec.distance is None else 64 - dec.distance,
                "frames_detected": wm["frames_detected"], "frames_read": wm["frames_read"]}
    return {"majority": majority, "soft": soft}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", default="384x256")
    ap.add_argument("--crf", default="23,28")
    ap.add_argument("--frames", type=int, default=16, help="frames examined, as verify's --frames")
    ap.add_argument("--backends", default="dwtDctSvd,dwtDctSvdVideo", help="stamps to compare")
    ap.add_argument("--repeats", type=int, default=1,
                    help="stamps per clip and backend, each with its own record id (so its own payload bits)")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    w, h = map(int, args.size.split("x"))
    crfs = [int(c) for c in args.crf.split(",")]
    backends = args.backends.split(",")
    n_frames = 24

    from genvis_trust.provenance.keys import init_keys, load_signing_material
    from genvis_trust.provenance.store import ProvenanceStore
    from genvis_trust.video import encode_mp4
    from genvis_trust.video.stamp import reencode, stamp_video

    tmp = Path(tempfile.mkdtemp(prefix="gvt-video-wm-"))
    init_keys(tmp / "keys")
    material = load_signing_material(tmp / "keys")
    store = ProvenanceStore(tmp / "p.db")
    rows = []
    t0 = time.time()
    for name, img in photographs().items():
        source = encode_mp4(clip(img, w, h, n_frames), fps=12)
        for backend, repeat in [(b, k) for k in range(args.repeats) for b in backends]:
            res = stamp_video(source, tmp / f"{name}-{backend}-{repeat}.mp4", store=store, material=material,
                              generator="benchmark", backend=backend)
            stamped = (tmp / f"{name}-{backend}-{repeat}.mp4").read_bytes()
            row = {"clip": name, "backend": backend, "repeat": repeat, "record_id": res.record_id, "psnr_db": res.psnr_db,
                   "stamped_bytes": len(stamped), "stamped_kbit_s": round(len(stamped) * 8 / 1000 / (n_frames / 12), 1)}
            for crf in crfs:
                again = reencode(stamped, crf=crf)
                got = _read(again, name, backend, args.frames, res.record_id, res.issuer_id)
                got["soft_all_frames"] = _read(again, name, backend, n_frames, res.record_id, res.issuer_id)["soft"]
                row[f"crf{crf}"] = {**got, "bytes": len(again), "kbit_s": round(len(again) * 8 / 1000 / (n_frames / 12), 1)}
            rows.append(row)
            print(json.dumps(row), file=sys.stderr)
    store.close()
    summary: dict = {}
    for backend in backends:
        rb = [r for r in rows if r["backend"] == backend]
        s = summary[backend] = {"psnr_db_min": min(r["psnr_db"] for r in rb),
                                "psnr_db_median": float(np.median([r["psnr_db"] for r in rb])),
                                "stamped_median_kbit_s": float(np.median([r["stamped_kbit_s"] for r in rb]))}
        for crf in crfs:
            rs = [r[f"crf{crf}"] for r in rb]
            s[f"crf{crf}"] = {"median_kbit_s": float(np.median([r["kbit_s"] for r in rs]))}
            for pooling in POOLINGS:
                s[f"crf{crf}"][pooling] = {
                    "stamps_recovered": f"{sum(r[pooling]['recovered'] for r in rs)}/{len(rs)}",
                    "pooled_bits_median": float(np.median([r[pooling]["pooled_bits"] or 0 for r in rs])),
                    "frames_alone": f"{sum(r[pooling]['frames_detected'] for r in rs)}/{sum(r[pooling]['frames_read'] for r in rs)}",
                }
    result = {"benchmark": "video watermark survival", "date": datetime.date.today().isoformat(),
              "command": "python benchmarks/video_watermark.py " + " ".join(argv if argv is not None else sys.argv[1:]),
              "machine": f"{platform.machine()}, {os.cpu_count()} cores (run pinned with taskset -c 1), no GPU",
              "seconds": round(time.time() - t0, 1), "size": args.size, "frames_per_clip": n_frames, "fps": 12,
              "frames_examined": args.frames, "repeats": args.repeats, "stamp_crf": 18, "summary": summary, "clips": rows}
    print(json.dumps(summary, indent=2))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
