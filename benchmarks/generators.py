"""Benchmark every generator family on built-in data and print one table.

Default: train each family for a fixed wall-time budget with its bundled recipe's data,
config, batch and learning rate, then measure. ``--bundled``: measure the shipped models
instead (train time read from their cards). Columns:

- params, train steps and seconds;
- samples/s (diffusion: DDIM and ancestral on the same checkpoint, and their ratio);
- bits/dim on the held-out test split where defined (flow, PixelCNN exact; VAE a bound);
- FID / KID with the toolkit's feature network (gvt-features-v1) against the held-out
  ``test`` split, next to trivial baselines at the same N: uniform noise and Gaussian-
  blurred real *train* images (sigma 1.5); "real train" is the floor a perfect model gets;
- class accuracy and mode coverage by the toolkit's digit classifier (digits models).

Usage:
    python benchmarks/generators.py                       # ~6.5 min measured, 1 thread, 2 shared cores
    python benchmarks/generators.py --bundled --n-eval 500
    python benchmarks/generators.py --families vae,flow --budget-s 30 --json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from genvis_trust.generators import (
    list_bundled,
    load_generator,
    resolve_device,
    set_cpu_threads,
    train_generator,
)
from genvis_trust.generators.artifact import read_json
from genvis_trust.generators.features import ToolkitFeatures
from genvis_trust.generators.metrics import (
    compare_features,
    mode_coverage,
    reference_images,
    sample_images,
)
from genvis_trust.generators.training import heldout_bits_per_dim, load_data

FAMILIES = ["gan", "vae", "diffusion", "flow", "autoregressive"]
BUNDLED_BY_FAMILY = {
    "gan": "gan-digits", "vae": "vae-photos", "diffusion": "diffusion-digits",
    "flow": "flow-photos", "autoregressive": "pixelcnn-photos",
}


def recipe(family: str) -> dict:
    """Data, config, batch, lr of the bundled model of ``family`` (its card and config)."""
    path = list_bundled()[BUNDLED_BY_FAMILY[family]]
    card, cfg = read_json(path / "card.json"), read_json(path / "config.json")
    return {"data": card["data"]["source"], "config": cfg["config"], "batch": card["batch"],
            "lr": card.get("lr"), "steps": card["steps"]}


def speed(model, n: int, **sampler) -> float:
    t0 = time.time()
    sample_images(model, n, seed=99, batch=n, **sampler)
    return n / (time.time() - t0)


def baselines(source: str, n: int, ext: ToolkitFeatures, real_feats: np.ndarray) -> dict:
    train, _ = reference_images(source, split="train", n=n, seed=7)
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, train.shape, dtype=np.uint8)
    blurred = np.stack([cv2.GaussianBlur(im, (0, 0), 1.5) for im in train])
    out = {}
    for name, imgs in (("real train (floor)", train), ("blurred real train", blurred), ("uniform noise", noise)):
        m = compare_features(real_feats, ext.features(imgs))
        out[name] = {"fid": m["fid"], "kid": m["kid"]}
    return out


def run(args) -> dict:
    threads = set_cpu_threads(args.threads)
    ext = ToolkitFeatures(device=args.device)
    work = Path(args.out or tempfile.mkdtemp(prefix="genvis-bench-"))
    rows, base_cache = [], {}
    for fam in args.families:
        r = recipe(fam)
        if args.bundled:
            name = BUNDLED_BY_FAMILY[fam]
            lg = load_generator(name, args.device, info=True)
            train_s, steps = lg.card.get("wall_time_s"), lg.card.get("steps")
        else:
            out = work / fam
            print(f"[{fam}] training for {args.budget_s:.0f}s on {r['data']} ...", file=sys.stderr, flush=True)
            td = load_data(r["data"], image_size=r["config"].get("image_size", 32), n=args.train_n, seed=0)
            cfg = dict(r["config"])
            res = train_generator(fam, out, data=td, steps=r["steps"], batch=r["batch"], lr=r["lr"],
                                  device=args.device, config=cfg, time_budget_s=args.budget_s,
                                  checkpoint_every=10**9, eval_n=0, command="benchmarks/generators.py")
            lg = load_generator(out, args.device, info=True)
            lg.card["data"] = {"source": r["data"]}
            train_s, steps = res.wall_time_s, res.step
        g = lg.model
        row = {"family": fam, "model": lg.name, "data": r["data"], "params": g.num_params(),
               "train_steps": steps, "train_s": train_s}
        print(f"[{fam}] measuring ...", file=sys.stderr, flush=True)
        cls_kw = {}
        if fam == "diffusion":
            row["samples_per_s_ddim"] = speed(g, 16, sampler="ddim", steps=args.ddim_steps)
            row["samples_per_s_ancestral"] = speed(g, args.n_speed_slow, sampler="ancestral")
            row["ddim_speedup"] = row["samples_per_s_ddim"] / row["samples_per_s_ancestral"]
            row["sampler_for_quality"] = f"ddim {args.ddim_steps} steps"
            cls_kw = {"sampler": "ddim", "steps": args.ddim_steps}
        else:
            row["samples_per_s"] = speed(g, args.n_speed_slow if fam == "autoregressive" else 64)
        if g.has_likelihood:
            row.update(heldout_bits_per_dim(g, r["data"], n=256))
        n = args.n_eval_ar if fam == "autoregressive" else args.n_eval
        real, _ = reference_images(r["data"], split="test", n=n)
        fr = ext.features(real)
        imgs, classes = sample_images(g, n, seed=1234, **cls_kw)
        m = compare_features(fr, ext.features(imgs))
        row.update({"n_eval": n, "fid": m["fid"], "kid": m["kid"], "precision": m["precision"],
                    "recall": m["recall"]})
        key = (r["data"], n)
        if key not in base_cache:
            base_cache[key] = baselines(r["data"], n, ext, fr)
        row["baselines"] = base_cache[key]
        row["beats_blur"] = m["fid"] < base_cache[key]["blurred real train"]["fid"]
        row["beats_noise"] = m["fid"] < base_cache[key]["uniform noise"]["fid"]
        if r["data"] == "builtin-digits":
            pred = ext.classify_digits(imgs)
            row["mode_coverage"] = mode_coverage(pred, 10, min_share=0.01)["mode_coverage"]
            if g.num_classes:
                row["class_accuracy"] = float(np.mean(pred == np.asarray(classes)))
        rows.append(row)
        print(f"[{fam}] {json.dumps({k: v for k, v in row.items() if k != 'baselines'}, default=str)}",
              file=sys.stderr, flush=True)
    return {
        "machine": f"{platform.machine()} {_cpu_name()} ({os.cpu_count()} cores, {torch.get_num_threads()} torch "
                   f"threads), torch {torch.__version__}, device {resolve_device(args.device)}",
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "command": "python " + " ".join(sys.argv),
        "mode": "bundled models" if args.bundled else f"trained {args.budget_s:.0f}s per family",
        "threads": threads, "feature_network": ext.record(), "rows": rows,
    }


def _cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "cpu"


def fmt(v, p=3):
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "NO"
    if isinstance(v, float):
        return f"{v:.{p}g}"
    return str(v)


def markdown(rep: dict) -> str:
    lines = [
        f"Machine: {rep['machine']}. Date: {rep['date']}. Mode: {rep['mode']}.",
        f"Command: `{rep['command']}`. Features: {rep['feature_network']['name']}; "
        "reference = held-out test split of the model's data.",
        "",
        "| family | model | data | params | steps | train s | samples/s | bits/dim (test) | N | FID | KID | "
        "FID blurred-real | FID noise | FID real-train | beats blur / noise | class acc | mode cov |",
        "|---" * 17 + "|",
    ]
    for r in rep["rows"]:
        if "ddim_speedup" in r:
            sps = (f"{fmt(r['samples_per_s_ddim'])} DDIM / {fmt(r['samples_per_s_ancestral'])} ancestral "
                   f"(x{r['ddim_speedup']:.0f})")
        else:
            sps = fmt(r["samples_per_s"])
        b = r["baselines"]
        bpd = "-"
        if "test_bits_per_dim" in r:
            bpd = f"{r['test_bits_per_dim']:.3f}" + (" (bound)" if "bound" in r["bits_per_dim_kind"] else "")
        lines.append(
            f"| {r['family']} | {r['model']} | {r['data']} | {r['params']:,} | {r['train_steps']} | "
            f"{fmt(r['train_s'])} | {sps} | {bpd} | {r['n_eval']} | {fmt(r['fid'])} | {fmt(r['kid'])} | "
            f"{fmt(b['blurred real train']['fid'])} | {fmt(b['uniform noise']['fid'])} | "
            f"{fmt(b['real train (floor)']['fid'])} | {fmt(r['beats_blur'])} / {fmt(r['beats_noise'])} | "
            f"{fmt(r.get('class_accuracy'))} | {fmt(r.get('mode_coverage'))} |"
        )
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--families", default=",".join(FAMILIES))
    ap.add_argument("--bundled", action="store_true", help="measure the shipped models, no training")
    ap.add_argument("--budget-s", type=float, default=60.0, help="training seconds per family")
    ap.add_argument("--train-n", type=int, default=None, help="training images/patches (default: as the recipe)")
    ap.add_argument("--n-eval", type=int, default=256, help="generated and reference images for FID/KID")
    ap.add_argument("--n-eval-ar", type=int, default=64, help="the same for PixelCNN (slow sampling)")
    ap.add_argument("--n-speed-slow", type=int, default=4, help="images timed for PixelCNN / ancestral DDPM")
    ap.add_argument("--ddim-steps", type=int, default=50)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--out", default=None, help="where trained artifacts go (default: a temp folder)")
    ap.add_argument("--json", action="store_true", help="print the JSON report instead of markdown")
    args = ap.parse_args(argv)
    args.families = [f.strip() for f in args.families.split(",") if f.strip()]
    rep = run(args)
    print(json.dumps(rep, indent=2, default=str) if args.json else markdown(rep))


if __name__ == "__main__":
    main()
