"""Build a spliced corpus (a region of each real photograph replaced by its TAEF2 reconstruction,
with masks) for developing and measuring localisation.

    python scripts/build_spliced_corpus.py photos-native --split test --out spliced-test
    python scripts/build_spliced_corpus.py builtin-photos --split all --out spliced-builtin

SOURCE is a registered source name or a folder/corpus path; see genvis_trust.datasets.splice.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time

from genvis_trust.datasets import get_source
from genvis_trust.datasets.splice import splice_corpus


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("source")
    ap.add_argument("--out", required=True)
    ap.add_argument("--split", default="test", help="train, val, test or all")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-side", type=int, default=768)
    ap.add_argument("--autoencoder", default="taef2")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--overwrite", action="store_true")
    a = ap.parse_args(argv)
    src = get_source(a.source, split=None if a.split == "all" else a.split, seed=a.seed)
    t0 = time.time()
    n = splice_corpus(src.samples(), a.out, autoencoder=a.autoencoder, device=a.device, seed=a.seed,
                      max_side=a.max_side, overwrite=a.overwrite,
                      command="python " + " ".join(shlex.quote(x) for x in sys.argv),
                      progress=lambda k: print(f"\r{k}", end="", file=sys.stderr))
    print(f"\nwrote {n} spliced images to {a.out} in {time.time() - t0:.0f}s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
