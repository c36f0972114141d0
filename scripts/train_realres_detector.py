#!/usr/bin/env python3
"""Train a real-resolution detector on real photographs vs their aligned reconstructions.

    python scripts/train_realres_detector.py --real DATA/photos-native \
        --fake DATA/recon-taef2 [--fake DATA/recon-other] --family cnn --patch 128 \
        --steps 1500 --out runs/realres-cnn

Both classes are whole images at native resolution; every step cuts random ``--patch`` crops
*before* augmenting (JPEG, blur and down-scaling, on both classes alike). Splits come from the
corpora's manifests (``meta.split``, per photograph), so a photograph and its reconstruction
are always on the same side. Early stopping and calibration use the val split; the test split
is left for ``benchmarks/detectors_realworld.py``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--real", action="append", required=True, help="real corpus (meta.split per record)")
    ap.add_argument("--fake", action="append", required=True, help="generated corpus (meta.split per record)")
    ap.add_argument("--real-builtin", action="append", default=[], help="built-in real source of small patches (builtin-photos, builtin-digits)")
    ap.add_argument("--builtin-n", type=int, default=100, help="patches per built-in real source")
    ap.add_argument("--small-fake", action="append", default=[], help="generated corpus of small images (the bundled generators' samples)")
    ap.add_argument("--small-n", type=int, default=40, help="images per small generated corpus")
    ap.add_argument("--domain", default=None, help="JSON of the domain the card declares (min_side, photographic, ...)")
    ap.add_argument("--family", default="cnn")
    ap.add_argument("--net", default="{}", help="JSON of network config overrides")
    ap.add_argument("--patch", type=int, default=128)
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--jpeg-p", type=float, default=0.5)
    ap.add_argument("--jpeg-quality", default="65,100")
    ap.add_argument("--blur-p", type=float, default=0.1)
    ap.add_argument("--resize-p", type=float, default=0.2)
    ap.add_argument("--upscale-p", type=float, default=0.0)
    ap.add_argument("--val-crops", type=int, default=8)
    ap.add_argument("--eval-every", type=int, default=100)
    ap.add_argument("--patience", type=int, default=6)
    ap.add_argument("--max-tiles", type=int, default=64)
    ap.add_argument("--calibration", default="platt")
    ap.add_argument("--paired", action="store_true", help="aligned pairs share crops and augmentation in each batch")
    ap.add_argument("--pair-share", type=float, default=0.5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()

    import torch

    from genvis_trust.datasets.corpus import CorpusSource
    from genvis_trust.detectors.training import TrainConfig, train_detector

    if args.threads:
        torch.set_num_threads(args.threads)
    q = tuple(int(v) for v in args.jpeg_quality.split(","))
    cfg = TrainConfig(
        steps=args.steps, batch=args.batch, lr=args.lr, jpeg_p=args.jpeg_p, jpeg_quality=q, blur_p=args.blur_p,
        resize_p=args.resize_p, upscale_p=args.upscale_p, val_crops=args.val_crops, eval_every=args.eval_every, patience=args.patience,
        calibration=args.calibration, seed=args.seed, paired=args.paired, pair_share=args.pair_share,
    )

    from genvis_trust.datasets import get_source

    def sources(paths, split, label):
        return [CorpusSource(p, keep_splits=True, split=split, label=label) for p in paths]

    def small_real(split):
        n = args.builtin_n if split == "train" else max(1, args.builtin_n // 4)
        return [get_source(name, patch=32, n=n, seed=args.seed, split=split) for name in args.real_builtin]

    def small_fake(split):
        n = args.small_n if split == "train" else max(1, args.small_n // 4)
        return [CorpusSource(p, split=split, n=n, seed=args.seed) for p in args.small_fake]

    t0 = time.time()
    res = train_detector(
        args.family,
        sources(args.real, "train", "real") + small_real("train"),
        sources(args.fake, "train", "generated") + small_fake("train"),
        real_val=sources(args.real, "val", "real") + small_real("val"),
        fake_val=sources(args.fake, "val", "generated") + small_fake("val"),
        patch=args.patch, config=cfg, device="cpu", net_config=json.loads(args.net),
        progress=lambda i, n: print(f"step {i}/{n}", file=sys.stderr, flush=True) if i % 50 == 0 else None,
    )
    det = res.detector
    det.max_tiles = args.max_tiles
    card = {
        "name": Path(args.out).name,
        "summary": f"{args.family} at {args.patch}px on real photographs vs aligned reconstructions",
        "data": {
            "real": [str(p) for p in args.real] + [f"{b} (32px patches, n={args.builtin_n})" for b in args.real_builtin],
            "generated": [str(p) for p in args.fake] + [f"{p} (n={args.small_n})" for p in args.small_fake],
            "origins": {str(p): json.loads((Path(p) / "card.json").read_text()).get("about") for p in args.real + args.fake},
        },
        "command": "python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
        "wall_time_s": round(time.time() - t0, 1),
    }
    if args.domain:
        card["domain"] = json.loads(args.domain)
    det.save(args.out, card=card)
    m = res.metrics
    print(json.dumps({"out": args.out, "val_auc": m["val_auc"], "steps": m["steps"], "n_train": m["n_train"],
                      "wall_s": round(time.time() - t0, 1), "history": res.history[-3:]}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
