"""Copy a trained generator run into the package's bundled models, with a complete card.

    python scripts/bundle_generator.py RUN_FOLDER --name NAME [--half] [--evaluate 64]

- copies ``config.json`` and the sampling weights (never ``train_state.safetensors``);
  ``--half`` stores floating-point weights as fp16 (half the bytes; the loader casts back);
- adds to ``card.json``: where the training photographs came from (per set: repository and
  commit, or Debian package and version, and the licence, counted over the split trained on)
  and, with ``--evaluate N``, ``genvis-trust generators evaluate`` numbers (FID/KID/precision/
  recall with the toolkit's feature network against held-out real crops of the output size,
  beside blurred-real and noise baselines at the same N).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

from safetensors.torch import load_file, save

from genvis_trust.atomic import atomic_write_bytes, atomic_write_text
from genvis_trust.generators.artifact import CARD, CONFIG, WEIGHTS
from genvis_trust.io import sha256_file

ASSETS = Path(__file__).resolve().parent.parent / "genvis_trust" / "assets" / "generators"


def data_origins(source: str, split: str | None) -> list[dict]:
    """Per set of the training source: origin, licence and how many photographs were used
    (read from the photo corpus's manifest, restricted to the split trained on)."""
    if source != "photos-native":
        return []
    from genvis_trust.datasets import read_corpus
    from genvis_trust.datasets.photos import data_home

    sets: dict[str, dict] = {}
    for rec in read_corpus(data_home() / "photos-native", hashes=False).records:
        meta = rec.get("meta") or {}
        if split and meta.get("split") != split:
            continue
        origin = meta.get("origin") or {}
        where = origin.get("repository") or origin.get("package") or "?"
        at = origin.get("commit") or origin.get("version") or ""
        name = meta.get("set") or rec.get("source")
        r = sets.setdefault(f"{name}|{where}|{at}", {"set": name, "origin": where, "at": at,
                                                     "licence": meta.get("licence"), "photographs": 0})
        r["photographs"] += 1
    return sorted(sets.values(), key=lambda r: -r["photographs"])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path)
    ap.add_argument("--name", required=True)
    ap.add_argument("--half", action="store_true", help="store floating-point weights as fp16")
    ap.add_argument("--evaluate", type=int, default=0, metavar="N", help="evaluate with N samples (0: skip)")
    ap.add_argument("--assets", type=Path, default=ASSETS)
    ap.add_argument("--recipe", default="scripts/train_realres_generators.sh",
                    help="the script that reproduces the run (recorded in the card)")
    ap.add_argument("--reuse-evaluation", action="store_true",
                    help="keep the evaluation already in the bundled card (same weights only)")
    args = ap.parse_args(argv)

    card = json.loads((args.run / CARD).read_text())
    dest = args.assets / args.name
    old = json.loads((dest / CARD).read_text()) if (dest / CARD).is_file() else {}
    tmp = args.assets / f".{args.name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    shutil.copy2(args.run / CONFIG, tmp / CONFIG)
    if args.half:
        state = load_file(str(args.run / WEIGHTS))
        state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
        atomic_write_bytes(tmp / WEIGHTS, save(state, metadata={"family": card["family"]}))
        card["weights_dtype"] = "float16 (trained in float32; converted by scripts/bundle_generator.py --half)"
    else:
        shutil.copy2(args.run / WEIGHTS, tmp / WEIGHTS)
    card["checkpoint_sha256"] = sha256_file(tmp / WEIGHTS)
    card["weights_bytes"] = (tmp / WEIGHTS).stat().st_size
    data = card.get("data", {})
    origins = data_origins(data.get("source", ""), data.get("split"))
    if origins:
        card["data_origins"] = origins
    card["recipe"] = args.recipe
    card["bundled"] = {"name": args.name, "from_run": str(args.run),
                       "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                       "command": " ".join(["python", *sys.argv])}
    atomic_write_text(tmp / CARD, json.dumps(card, indent=2, sort_keys=True, default=str) + "\n")
    if args.reuse_evaluation and old.get("checkpoint_sha256") == card["checkpoint_sha256"] and "evaluation" in old:
        card["evaluation"] = old["evaluation"]
        atomic_write_text(tmp / CARD, json.dumps(card, indent=2, sort_keys=True, default=str) + "\n")
    elif args.evaluate:
        from genvis_trust.generators import load_generator
        from genvis_trust.generators.metrics import evaluate_generator

        lg = load_generator(tmp, "cpu", info=True)
        lg.name = args.name
        rep = evaluate_generator(lg, n=args.evaluate, with_baselines=True)
        card["evaluation"] = {k: rep[k] for k in ("n_generated", "n_reference", "reference", "image_size",
                                                  "feature_network", "metrics", "baselines", "sampler")}
        card["evaluation"]["command"] = f"genvis-trust generators evaluate {args.name} --n {args.evaluate}"
        atomic_write_text(tmp / CARD, json.dumps(card, indent=2, sort_keys=True, default=str) + "\n")
    shutil.rmtree(dest, ignore_errors=True)
    tmp.rename(dest)
    print(json.dumps({"bundled": str(dest), "bytes": card["weights_bytes"],
                      "evaluation": card.get("evaluation", {}).get("metrics")}, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
