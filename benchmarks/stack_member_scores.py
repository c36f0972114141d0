"""Image-level member logits of a stack detector (and of extra candidate members) on the real-world
sets, cached per image, in the JSON format ``scripts/stack_realworld.py --eval`` reads.

    python benchmarks/stack_member_scores.py --stack default --extra RUNS/Z24-zed64 \
        --photos DATA/photos-native --outside DATA/outside-dev/index.jsonl --bundled-n 16 \
        --cache DATA/member-cache.jsonl --out benchmarks/results/members24

Each image is tiled as the stack tiles it (its patch, ``max_tiles``); every member, the stack's
own and each ``--extra`` detector, reads each tile (a member with a smaller input reads the
tile as a grid of its own sub-tiles, as ``StackNet.member_logits`` does), and the tile logits
are averaged per image: the features the stack's logistic combination sees. The domain codes
are the stack's (its card's domain). Because the stack is linear in the member logits, a stack
with an extra member swapped in is evaluated from these columns without re-scoring.

Sets, as ``benchmarks/detectors_realworld.py --with-val`` names them: ``real`` (the photo
corpus's test split, as stored and re-shipped), ``real_val`` (its validation split, the same
forms plus the up-scaled head's extra forms), the outside generators of ``--outside`` (orig,
JPEG 90, long side 512), and fresh samples of the bundled generators (``bundled:`` seeds
10000+, ``bundled_val:`` seeds 20000+). Thresholds are never fitted here.

Scores are cached by the sha256 of the decoded pixels (and shape) plus the member set, one
JSON line each, so a stopped run resumes and a later run scores only what changed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from detectors_realworld import GEN_ENCODINGS, HEAD_VAL_VARIANTS, REAL_VARIANTS, load  # noqa: E402


def pixel_key(img: np.ndarray) -> str:
    h = hashlib.sha256(np.ascontiguousarray(img).tobytes())
    h.update(str(img.shape).encode())
    return h.hexdigest()


class MemberScorer:
    """Per-image member logits on the stack's tiles, cached."""

    def __init__(self, stack: str, extra: list[str], cache: Path | None, max_tiles: int | None = None):
        from genvis_trust.detectors import load_detector

        self.det = load_detector(stack, device="cpu")
        if not hasattr(self.det.net, "member_logits"):
            raise SystemExit(f"{stack} is not a stack detector")
        self.names = list((self.det.card.get("stacking") or {}).get("members") or [f"m{i}" for i in range(len(self.det.net.members))])
        self.extra = [load_detector(e, device="cpu") for e in extra]
        self.names += [Path(e).name for e in extra]
        if max_tiles:
            self.det.max_tiles = max_tiles
        self.tag = hashlib.sha256(json.dumps([self.det.sha256, *[e.sha256 for e in self.extra], self.det.max_tiles]).encode()).hexdigest()[:16]
        self.cache_path = cache
        self.cache: dict[str, dict] = {}
        if cache is not None and cache.is_file():
            for line in cache.read_text().splitlines():
                try:
                    r = json.loads(line)
                except json.JSONDecodeError:  # a line cut by a stopped run
                    continue
                if r.get("tag") == self.tag:
                    self.cache[r["key"]] = r
        self.fh = cache.open("a") if cache is not None else None

    @torch.no_grad()
    def _extra_logits(self, d, x: torch.Tensor) -> torch.Tensor:
        p, (h, w) = d.patch, x.shape[-2:]
        if p < h and h % p == 0 and w % p == 0:
            n, c = x.shape[:2]
            hi, wi = h // p, w // p
            sub = x.reshape(n, c, hi, p, wi, p).permute(0, 2, 4, 1, 3, 5).reshape(n * hi * wi, c, p, p)
            return d.net(sub).reshape(n, hi * wi).mean(1)
        return d.net(x)

    @torch.no_grad()
    def score(self, images: list[np.ndarray]) -> list[dict]:
        out: list[dict | None] = [None] * len(images)
        todo = []
        for i, im in enumerate(images):
            k = pixel_key(im)
            if k in self.cache:
                out[i] = self.cache[k]
            else:
                todo.append((i, k, im))
        for i, k, im in todo:
            tiles = self.det.tiles(im)[0]
            x = torch.from_numpy(np.ascontiguousarray(tiles)).permute(0, 3, 1, 2).float() / 255.0
            cols = [self.det.net.member_logits(x)]
            cols += [self._extra_logits(d, x)[:, None] for d in self.extra]
            m = torch.cat(cols, 1).mean(0).tolist()
            codes = sorted({o["code"] for o in self.det.domain_check(im)})
            r = {"key": k, "tag": self.tag, "members": [round(v, 5) for v in m], "codes": codes}
            self.cache[k] = r
            if self.fh is not None:
                self.fh.write(json.dumps(r) + "\n")
                self.fh.flush()
            out[i] = r
        return out  # type: ignore[return-value]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--stack", default="default")
    ap.add_argument("--extra", action="append", default=[], help="an extra member detector to score on the same tiles")
    ap.add_argument("--photos", required=True)
    ap.add_argument("--outside", action="append", default=[])
    ap.add_argument("--bundled-n", type=int, default=16)
    ap.add_argument("--max-per-generator", type=int, default=60)
    ap.add_argument("--only", action="append", default=[], help="score only these sets (real, real_val, outside, bundled)")
    ap.add_argument("--max-tiles", type=int, help="tiles per image (default: the stack's max_tiles); fewer is cheaper and coarser")
    ap.add_argument("--max-real", type=int, help="at most this many photographs per split (every k-th record, stable)")
    ap.add_argument("--real-forms", help="comma-separated re-shipped forms of the photographs to score (default: all)")
    ap.add_argument("--cache", type=Path)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()

    from genvis_trust.datasets import read_corpus

    torch.set_num_threads(1)
    t0 = time.time()
    sc = MemberScorer(args.stack, args.extra, args.cache, max_tiles=args.max_tiles)
    want = set(args.only) or {"real", "real_val", "outside", "bundled"}
    sets: dict[str, tuple[list[np.ndarray], dict]] = {}
    origins: dict[str, list[dict]] = {}
    c = read_corpus(args.photos)
    for split, name, forms in (("test", "real", REAL_VARIANTS), ("val", "real_val", {**REAL_VARIANTS, **HEAD_VAL_VARIANTS})):
        if name in want:
            recs = [r for r in c.records if (r.get("meta") or {}).get("split") == split]
            if args.max_real and len(recs) > args.max_real:
                recs = recs[:: -(-len(recs) // args.max_real)]
            if args.real_forms:
                forms = {f: forms[f] for f in args.real_forms.split(",") if f in forms}
            sets[name] = ([load(c.file(r)) for r in recs], forms)
            origins[name] = [{**((r.get("meta") or {}).get("origin") or {}), "key": r["key"]} for r in recs]
    if "outside" in want:
        gens: dict[str, list] = {}
        for idx in args.outside:
            base = Path(idx).parent
            for line in Path(idx).read_text().splitlines():
                e = json.loads(line)
                g = gens.setdefault(e["generator"], [])
                if len(g) < args.max_per_generator:
                    g.append((load(base / e["path"]), {k: e.get(k) for k in ("repo", "commit", "repo_path", "sha256", "tile")}))
        for g, items in gens.items():
            sets[g] = ([im for im, _ in items], GEN_ENCODINGS)
            origins[g] = [o for _, o in items]
    if "bundled" in want and args.bundled_n:
        from genvis_trust.generators import list_bundled, load_generator

        for name in list_bundled():
            gen = load_generator(name, device="cpu")
            for prefix, seed0 in (("bundled", 10_000), ("bundled_val", 20_000)):
                imgs = list(gen.sample(list(range(seed0, seed0 + args.bundled_n))).numpy())
                sets[f"{prefix}:{name}"] = (imgs, GEN_ENCODINGS)
                origins[f"{prefix}:{name}"] = [{"bundled": name, "seed": seed0 + i} for i in range(len(imgs))]
    print(f"{len(sets)} sets, {sum(len(v[0]) * len(v[1]) for v in sets.values())} images to score ({len(sc.cache)} cached)", file=sys.stderr)

    dets = {n: {"logits": {}, "out_of_domain": {}, "domain_codes": {}} for n in sc.names}
    for set_name, (images, forms) in sets.items():
        for enc, fn in forms.items():
            rs = sc.score([fn(im) for im in images])
            for j, n in enumerate(sc.names):
                dets[n]["logits"].setdefault(set_name, {})[enc] = [r["members"][j] for r in rs]
                dets[n]["out_of_domain"].setdefault(set_name, {})[enc] = [any(code != "small" for code in r["codes"]) for r in rs]
                dets[n]["domain_codes"].setdefault(set_name, {})[enc] = [r["codes"] for r in rs]
            print(f"{set_name} {enc} {len(rs)} ({time.time() - t0:.0f} s)", file=sys.stderr)
    res = {"detectors": dets, "sets": origins,
           "meta": {"date": time.strftime("%Y-%m-%d"), "command": "python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
                    "wall_s": round(time.time() - t0, 1), "members": sc.names, "stack_sha256": sc.det.sha256,
                    "domain": sc.det.card.get("domain"), "tiling": {"patch": sc.det.patch, "max_tiles": sc.det.max_tiles}}}
    out = Path(args.out).with_suffix(".json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res) + "\n")
    print(f"wrote {out} ({res['meta']['wall_s']} s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
