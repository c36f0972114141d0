#!/usr/bin/env python3
"""Copy a generated corpus, storing a share of its images as JPEG (4:2:0, quality 80-97), so a
detector's two classes come from lossy files in the same proportion (the training format guard).

    python scripts/match_codec_share.py SRC --share 0.4 --out DST

Which images become JPEG, and at which quality, follows a stable hash of the record's path, so a
rerun writes the same corpus. Records keep family, seed, group and meta; ``meta.codec_matched``
names the source corpus.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("src")
    ap.add_argument("--share", type=float, default=0.4, help="share of images stored as JPEG")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()

    from genvis_trust.datasets import CorpusWriter, read_corpus
    from genvis_trust.datasets.base import stable_int
    from genvis_trust.io import encode_image, load_image

    src = read_corpus(args.src)
    card = {"about": f"{src.card.get('about') or Path(args.src).name}; {args.share:.0%} stored as JPEG q80-97 "
                     f"(scripts/match_codec_share.py from {args.src})"}
    n_jpeg = 0
    with CorpusWriter(args.out, card=card) as w:
        for r in src.records:
            h = stable_int(0, "codec", r["path"])
            data = None
            if (h % 1000) / 1000 < args.share:
                img = load_image(src.file(r)).array
                data = encode_image(img, "JPEG", quality=80 + h % 18)
                n_jpeg += 1
            else:
                data = src.file(r).read_bytes()
            w.add(None, data=data, label=r["label"], source=r.get("source") or "corpus", key=r.get("key"), group=r.get("group"),
                  class_id=r.get("class_id"), family=r.get("family"), seed=r.get("seed"), checkpoint_sha256=r.get("checkpoint_sha256"),
                  meta={**(r.get("meta") or {}), "codec_matched": str(args.src)})
    print(f"{args.out}: {len(src.records)} images, {n_jpeg} as JPEG")
    return 0


if __name__ == "__main__":
    sys.exit(main())
