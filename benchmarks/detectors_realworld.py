"""Real-world detector evaluation: outside generators, re-encoded copies, re-shipped real photos.

Run:
    python benchmarks/detectors_realworld.py --detector default --detector runs/realres-cnn \
        --photos DATA/photos-native --recon DATA/recon-taef2 \
        --outside DIR/index.jsonl [--outside-real-as-real] --out benchmarks/results/realworld

Sets (each image's origin is written to the results):
- real: the ``test`` split of the photos-native corpus (never trained, tuned or calibrated on)
  plus the built-in photographs (``--builtin-real``; note the old default trained on their
  train split), each as stored and re-shipped: JPEG 40, long side resized to 512, upscaled 2x,
  a 60% corner crop, a 16:9 letterbox, a PNG re-save;
- generated: outside generators' published samples listed in ``--outside`` index files
  (JSON lines with path, generator, repo, commit, repo_path, licence), the ``test`` split of
  aligned reconstruction corpora (``--recon``), and fresh samples of the bundled generators;
  each as stored (``orig``), as JPEG 90 and with its long side resized to 512.

Metrics per detector, generator and encoding: TPR at the detector's calibrated threshold
(p >= 0.5), FPR on the real photos under the same encoding, balanced accuracy, and AUC
(ranking real vs generated). Thresholds are never fitted here.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

from genvis_trust.detectors.stacking import GENERATED_FORMS, HEAD_FORMS, REAL_FORMS

HERE = Path(__file__).resolve().parent

# the forms are the package's, shared with the stack fit (genvis_trust.detectors.stacking)
GEN_ENCODINGS = GENERATED_FORMS
REAL_VARIANTS = REAL_FORMS
# validation photographs only (``--with-val``): more up-scaled forms, for fitting a detector's
# up-scaled head (``scripts/stack_realworld.py --upscaled-head``); never in the test sets
HEAD_VAL_VARIANTS = HEAD_FORMS


def load(path: Path) -> np.ndarray:
    from genvis_trust.io import load_image

    return load_image(path).array


def auc(real: np.ndarray, fake: np.ndarray) -> float:
    from genvis_trust.detectors.metrics import roc_auc

    y = np.r_[np.zeros(len(real)), np.ones(len(fake))]
    return float(roc_auc(y, np.r_[real, fake]))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--detector", action="append", required=True)
    ap.add_argument("--photos", required=True, help="photos-native corpus (its test split is used)")
    ap.add_argument("--recon", action="append", default=[], help="aligned reconstruction corpus (test split)")
    ap.add_argument("--outside", action="append", default=[], help="index.jsonl of outside generators' samples")
    ap.add_argument("--builtin-real", action="store_true", help="add the built-in photographs to the real set")
    ap.add_argument("--bundled-n", type=int, default=40, help="fresh samples per bundled generator (0: none)")
    ap.add_argument("--max-per-generator", type=int, default=60)
    ap.add_argument("--with-val", action="store_true", help="also score the validation splits (logits only, for stacking)")
    ap.add_argument("--val-only", action="store_true", help="score only the validation photographs (with --with-val; to add to an earlier run)")
    ap.add_argument("--out", default=str(HERE / "results" / "realworld"))
    args = ap.parse_args()

    from genvis_trust.datasets import read_corpus
    from genvis_trust.detectors import load_detector
    from genvis_trust.devices import use_all_cores

    use_all_cores()
    t0 = time.time()
    # ---- real set
    real: list[tuple[str, np.ndarray, dict]] = []
    c = read_corpus(args.photos)
    if args.val_only:
        args.with_val, args.recon, args.outside, args.builtin_real, args.bundled_n = True, [], [], False, 0
    for r in c.records:
        if (r.get("meta") or {}).get("split") == "test" and not args.val_only:
            real.append((r["key"], load(c.file(r)), (r.get("meta") or {}).get("origin") or {}))
    if args.builtin_real:
        from genvis_trust.datasets import get_source

        for s in get_source("builtin-photos"):
            real.append((s.key, s.image, {"builtin": s.key}))
    # ---- generated sets
    gens: dict[str, list[tuple[str, np.ndarray, dict]]] = {}
    val_bundled: dict[str, list[np.ndarray]] = {}
    for rc in args.recon:
        cc = read_corpus(rc)
        for r in cc.records:
            if (r.get("meta") or {}).get("split") == "test":
                gens.setdefault(r.get("family") or Path(rc).name, []).append((r["key"], load(cc.file(r)), {"corpus": rc}))
    for idx in args.outside:
        base = Path(idx).parent
        for line in Path(idx).read_text().splitlines():
            if not line.strip():
                continue
            e = json.loads(line)
            if e.get("label", "generated") != "generated":
                continue
            g = gens.setdefault(e["generator"], [])
            if len(g) >= args.max_per_generator:
                continue
            try:
                g.append((e["path"], load(base / e["path"]), {k: e.get(k) for k in ("repo", "commit", "repo_path", "licence")}))
            except Exception as ex:  # an unreadable sample is reported, the rest go on
                print(f"skip {e['path']}: {ex}", file=sys.stderr)
    if args.bundled_n:
        from genvis_trust.generators import list_bundled, load_generator

        for name in list_bundled():
            gen = load_generator(name, device="cpu")
            imgs = gen.sample(list(range(10_000, 10_000 + args.bundled_n))).numpy()
            gens[f"bundled:{name}"] = [(f"{name}/{i}", im, {"bundled": name, "seed": 10_000 + i}) for i, im in enumerate(imgs)]
            if args.with_val:  # other seeds (20000+) for fitting, never the test ones above
                val_bundled[f"bundled_val:{name}"] = list(gen.sample(list(range(20_000, 20_000 + args.bundled_n))).numpy())
    # validation images (never scored for metrics): what a stacker or threshold may be fitted on
    val_sets: dict[str, list[np.ndarray]] = {}
    if args.with_val:
        val_sets["real_val"] = [load(c.file(r)) for r in c.records if (r.get("meta") or {}).get("split") == "val"]
        for rc in args.recon:
            cc = read_corpus(rc)
            val_sets["recon_val"] = val_sets.get("recon_val", []) + [load(cc.file(r)) for r in cc.records if (r.get("meta") or {}).get("split") == "val"]
        val_sets.update(val_bundled)
    print(f"real {len(real)}; generated: " + ", ".join(f"{k} {len(v)}" for k, v in gens.items()), file=sys.stderr)

    results = {"detectors": {}, "sets": {"real": [o for _, _, o in real], "generated": {k: [o for _, _, o in v] for k, v in gens.items()}}}
    for dname in args.detector:
        det = load_detector(dname, device="cpu")
        det.optimize_for_inference()

        logits: dict[str, dict[str, list[float]]] = {}
        ood: dict[str, dict[str, list[bool]]] = {}
        codes: dict[str, dict[str, list[list[str]]]] = {}
        heads: dict[str, dict[str, list[str | None]]] = {}

        def probs(images, key, det=det, logits=logits, ood=ood, codes=codes, heads=heads):
            """p per image, 0 where the input is outside the detector's domain for a reason that
            voids a positive too (as scan treats it); the raw image logits and those flags are
            kept for stacking (scripts/stack_realworld.py)."""
            ps, zs, out, cs, hs = [], [], [], [], []
            for i in range(0, len(images), 8):
                for sc in det.score_many(images[i : i + 8]):
                    void = any(o["code"] != "small" for o in sc.out_of_domain)
                    ps.append(0.0 if void else sc.probability)
                    zs.append(round(sc.logit, 5))
                    out.append(void)
                    # codes before any domain head took the input (what the domain check says)
                    cs.append(sorted({o["code"] for o in sc.out_of_domain} | ({sc.head} if sc.head else set())))
                    hs.append(sc.head)
            logits.setdefault(key[0], {})[key[1]] = zs
            ood.setdefault(key[0], {})[key[1]] = out
            codes.setdefault(key[0], {})[key[1]] = cs
            heads.setdefault(key[0], {})[key[1]] = hs
            return np.array(ps)

        for name, items in val_sets.items():  # validation images: features for fitting, no metrics
            for enc, fn in ({**REAL_VARIANTS, **HEAD_VAL_VARIANTS} if name == "real_val" else GEN_ENCODINGS).items():
                probs([fn(im) for im in items], (name, enc))
        if args.val_only:
            results["detectors"][dname] = {"card_sha256": det.sha256, "logits": logits, "out_of_domain": ood,
                                           "domain_codes": codes, "heads": heads}
            continue

        r_res = {}
        for v, fn in REAL_VARIANTS.items():
            p = probs([fn(im) for _, im, _ in real], ("real", v))
            r_res[v] = {"fpr": float(np.mean(p >= 0.5)), "n": len(p), "p": p.round(4).tolist()}
        g_res = {}
        for g, items in gens.items():
            g_res[g] = {}
            for enc, fn in GEN_ENCODINGS.items():
                p = probs([fn(im) for _, im, _ in items], (g, enc))
                rp = np.array(r_res[enc]["p"])
                tpr, fpr = float(np.mean(p >= 0.5)), float(np.mean(rp >= 0.5))
                g_res[g][enc] = {"tpr": tpr, "fpr_real": fpr, "balanced_acc": (tpr + 1 - fpr) / 2, "auc": auc(rp, p), "n": len(p)}
            print(dname, g, {e: round(v["balanced_acc"], 3) for e, v in g_res[g].items()}, file=sys.stderr)
        results["detectors"][dname] = {"real": r_res, "generated": g_res, "card_sha256": det.sha256, "logits": logits, "out_of_domain": ood,
                                       "domain_codes": codes, "heads": heads}
    results["meta"] = {
        "date": time.strftime("%Y-%m-%d"), "machine": f"{platform.machine()}, {__import__('os').cpu_count()} cores, CPU",
        "command": "python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]), "wall_s": round(time.time() - t0, 1),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(results, indent=1) + "\n")
    out.with_suffix(".md").write_text(markdown(results) + "\n")
    print(markdown(results))
    return 0


def markdown(res: dict) -> str:
    lines = []
    for dname, d in res["detectors"].items():
        if "generated" not in d:  # --val-only
            lines += [f"### {dname}: validation photographs only (logits for fitting; no metrics)", ""]
            continue
        lines += [f"### {dname}", "", "| generated set | n | " + " | ".join(f"{e} bal.acc / TPR / AUC" for e in GEN_ENCODINGS) + " |",
                  "|---|---|" + "---|" * len(GEN_ENCODINGS)]
        for g, encs in d["generated"].items():
            cells = [f"{v['balanced_acc']:.2f} / {v['tpr']:.2f} / {v['auc']:.2f}" for v in encs.values()]
            lines.append(f"| {g} | {next(iter(encs.values()))['n']} | " + " | ".join(cells) + " |")
        lines += ["", "| real photos | " + " | ".join(REAL_VARIANTS) + " |", "|---|" + "---|" * len(REAL_VARIANTS),
                  f"| FPR (n={next(iter(d['real'].values()))['n']}) | " + " | ".join(f"{v['fpr']:.3f}" for v in d["real"].values()) + " |", ""]
    m = res["meta"]
    lines.append(f"{m['date']}, {m['machine']}; `{m['command']}`; {m['wall_s']} s")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
