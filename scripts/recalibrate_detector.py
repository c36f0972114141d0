#!/usr/bin/env python3
"""Refit a detector's calibration on whole validation images of the corpora given.

    python scripts/recalibrate_detector.py DETECTOR --real PHOTOS --fake RECON [--split val] [--out DIR]

Scores every image of the split whole (tiles averaged, as ``scan`` does) and fits Platt
scaling on those image-level logits (``genvis_trust.detectors.training.calibrate_on_images``).
Splits come from the corpora's manifests. Writes the detector to --out (default: in place).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("detector")
    ap.add_argument("--real", action="append", required=True)
    ap.add_argument("--fake", action="append", required=True)
    ap.add_argument("--split", default="val")
    ap.add_argument("--method", default="platt")
    ap.add_argument("--fpr", type=float, default=None, help="put p = 0.5 at this false-positive rate on the real images")
    ap.add_argument("--out")
    args = ap.parse_args()

    from genvis_trust.datasets.corpus import CorpusSource
    from genvis_trust.detectors import load_detector
    from genvis_trust.detectors.training import calibrate_on_images

    det = load_detector(args.detector, device="cpu")
    real = [s.image for p in args.real for s in CorpusSource(p, keep_splits=True, split=args.split)]
    fake = [s.image for p in args.fake for s in CorpusSource(p, keep_splits=True, split=args.split)]
    before = det.calibration
    fit = calibrate_on_images(det, real, fake, args.method, fpr=args.fpr)
    fit["split"] = args.split
    fit["corpora"] = {"real": args.real, "generated": args.fake}
    fit["command"] = "python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]])
    fit["replaced"] = before
    det.save(args.out or args.detector, card={"image_calibration": fit})
    print(json.dumps({k: v for k, v in fit.items() if k != "replaced"}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
