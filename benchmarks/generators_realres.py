"""Speed and quality of the bundled real-resolution generators (256 px and 1024 px outputs).

For each model: params, training steps and wall time (from its card), images/s at its output
size (measured here, one image at a time as ``generate`` writes them), and as the in-run
baseline the rate of decoding a JPEG of the same size with Pillow (so "x slower than a
decode" is a ratio on the same machine, same run). Quality numbers (FID/KID/precision/recall
with the toolkit's feature network against held-out real crops of the output size, beside
blurred-real and noise baselines at the same N) are read from the card, where
``scripts/bundle_generator.py --evaluate N`` wrote them.

    python benchmarks/generators_realres.py [--n 8] [--device auto] [--json]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import sys
import time

import numpy as np
import torch
from PIL import Image

from genvis_trust.generators import list_bundled, load_generator, set_cpu_threads
from genvis_trust.generators.metrics import output_size
from genvis_trust.generators.sampling import sampler_settings

MODELS = ["klae-photos", "ldm-photos-256", "sr4-photos", "inpaint-photos", "gan-photos-128"]


def pillow_decode_rate(size: int, reps: int = 20) -> float:
    rng = np.random.default_rng(0)
    img = np.clip(rng.normal(128, 40, (size, size, 3)), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "JPEG", quality=90)
    data = buf.getvalue()
    t0 = time.perf_counter()
    for _ in range(reps):
        Image.open(io.BytesIO(data)).convert("RGB").load()
    return reps / (time.perf_counter() - t0)


def run(args) -> dict:
    threads = set_cpu_threads(args.threads)
    rows = []
    for name in args.models:
        if name not in list_bundled():
            print(f"[{name}] not bundled; skipped", file=sys.stderr)
            continue
        lg = load_generator(name, args.device, info=True)
        g = lg.model
        settings = sampler_settings(g)
        size = output_size(g, settings)
        g.sample([0], **settings)  # warm-up
        t0 = time.perf_counter()
        for i in range(args.n):
            g.sample([1000 + i], **settings)
        rate = args.n / (time.perf_counter() - t0)
        base = pillow_decode_rate(size)
        ev = lg.card.get("evaluation", {})
        rows.append({
            "model": name, "family": g.family, "output_px": size, "params": g.num_params(),
            "train_steps": lg.card.get("steps"), "train_s": lg.card.get("wall_time_s"),
            "train_device": lg.card.get("device"), "images_per_s": rate,
            "pillow_decode_per_s": base, "x_slower_than_decode": base / rate,
            "sampler": settings, "eval": ev.get("metrics"), "eval_baselines": ev.get("baselines"),
            "eval_n": ev.get("n_generated"), "eval_reference": ev.get("reference"),
        })
        print(f"[{name}] {size}px {rate:.3g} img/s", file=sys.stderr, flush=True)
    return {
        "machine": f"{platform.machine()} ({os.cpu_count()} cores, {threads} torch threads), torch "
                   f"{torch.__version__}, device {args.device} -> {'cuda' if torch.cuda.is_available() else 'cpu'}",
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "command": "python " + " ".join(sys.argv), "rows": rows,
    }


def fmt(v):
    if v is None:
        return "-"
    return f"{v:.3g}" if isinstance(v, float) else str(v)


def markdown(rep: dict) -> str:
    lines = [f"Machine: {rep['machine']}. Date: {rep['date']}. Command: `{rep['command']}`.", "",
             "| model | family | output px | params | train steps / s | images/s | x a Pillow decode | "
             "N | FID | KID | precision | recall | FID blurred-real | FID noise |", "|---" * 14 + "|"]
    for r in rep["rows"]:
        e, b = r["eval"] or {}, r["eval_baselines"] or {}
        lines.append(
            f"| {r['model']} | {r['family']} | {r['output_px']} | {r['params']:,} | {r['train_steps']} / "
            f"{fmt(r['train_s'])} | {fmt(r['images_per_s'])} | {fmt(r['x_slower_than_decode'])} | "
            f"{fmt(r['eval_n'])} | {fmt(e.get('fid'))} | {fmt(e.get('kid'))} | {fmt(e.get('precision'))} | "
            f"{fmt(e.get('recall'))} | {fmt(b.get('blurred real train', {}).get('fid'))} | "
            f"{fmt(b.get('uniform noise', {}).get('fid'))} |")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--n", type=int, default=8, help="images timed per model")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    args.models = [m.strip() for m in args.models.split(",") if m.strip()]
    rep = run(args)
    print(json.dumps(rep, indent=2, default=str) if args.json else markdown(rep))


if __name__ == "__main__":
    main()
