"""Detector benchmark on built-in data, in one run.

Run:  python benchmarks/detectors.py --corpora DIR [--steps 600] [--families cnn,npr,freq-cnn,freq-logreg]

DIR holds one corpus per bundled generator (what scripts/make_default_detector.sh writes,
or `genvis-trust generate MODEL --out DIR/MODEL`). Real data: built-in photo patches and
digits. Every split is by source group (photograph, digit image, generated seed): test
images never contributed to training or calibration.

It prints and writes (benchmarks/results/detectors.json + .md):
1. per family, trained on all generators: AUC / AP / acc / TPR@1%FPR on the test split,
   ECE before and after calibration (on test), real-photo false-positive rate;
2. robustness of each family: AUC and acc after JPEG 75 and 0.5x resize;
3. the cross-generator matrix for the default family: train on one generator family,
   test on each (plus leave-one-out: train on all but one, test on the held-out one);
4. the bundled default detector on the same test split (when it exists).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpora", required=True, help="folder with one generated corpus per generator")
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--families", default="cnn,npr,freq-cnn,freq-logreg")
    ap.add_argument("--real-n", type=int, default=4000)
    ap.add_argument("--test-n", type=int, default=1000)
    ap.add_argument("--out", default=str(HERE / "results" / "detectors"))
    args = ap.parse_args()

    from genvis_trust.datasets import get_source
    from genvis_trust.datasets.perturbations import create_perturbation
    from genvis_trust.detectors import list_bundled, load_detector
    from genvis_trust.detectors.calibration import apply_calibration
    from genvis_trust.detectors.evaluation import EvalSet, evaluate, logits, robustness
    from genvis_trust.detectors.metrics import ece
    from genvis_trust.detectors.training import TrainConfig, train_detector
    from genvis_trust.devices import use_all_cores

    use_all_cores()
    corpora = sorted(p for p in Path(args.corpora).iterdir() if (p / "manifest.jsonl").is_file())
    fam_of = {p: json.loads((p / "card.json").read_text())["generator"]["family"] for p in corpora}

    def reals(split, n):
        return [get_source("builtin-photos", patch=32, n=n // 2, seed=0, split=split),
                get_source("builtin-digits", n=n // 2, seed=0, split=split)]

    def fakes(ps, split):
        return [get_source(str(p), split=split, seed=0) for p in ps]

    cfg = TrainConfig(steps=args.steps, batch=64, eval_every=100, patience=4, jpeg_p=0.3, blur_p=0.1,
                      reencode="jpeg:quality=95", seed=0)

    def train(family, ps):
        t = time.time()
        r = train_detector(family, reals("train", args.real_n), fakes(ps, "train"), real_val=reals("val", args.real_n // 4),
                           fake_val=fakes(ps, "val"), config=cfg, device="cpu", log=lambda m: None)
        return r.detector, time.time() - t

    test_all = EvalSet.from_sources(reals("test", args.test_n), fakes(corpora, "test"))
    photos_only = EvalSet.from_sources([get_source("builtin-photos", patch=32, n=args.test_n, seed=0, split="test")], [])
    suite = {"jpeg_75": create_perturbation("jpeg", quality=75), "resize_0.5": create_perturbation("resize_back", factor=0.5)}
    res: dict = {"families": {}, "cross_generator": {}, "leave_one_out": {}}

    def fpr_photos(det):
        return float((det.probabilities(logits(det, photos_only.images)) >= 0.5).mean())

    def summarize(det, secs):
        ev = evaluate(det, test_all)
        z = logits(det, test_all.images)
        o = ev["overall"]
        rob = robustness(det, test_all, suite)
        return {
            "auc": o["auc"], "ap": o["ap"], "acc": o["acc"], "real_acc": o["real_acc"], "fake_acc": o["fake_acc"],
            "tpr_at_1pct_fpr": o["tpr_at_0.01_fpr"],
            "ece_uncalibrated": ece(test_all.labels, apply_calibration(None, z)),
            "ece_calibrated": o["ece"],
            "real_photo_fpr": fpr_photos(det),
            "per_generator_auc": {k: v["auc"] for k, v in ev["per_generator"].items()},
            "jpeg_75": {"auc": rob["jpeg_75"]["auc"], "acc": rob["jpeg_75"]["acc"]},
            "resize_0.5": {"auc": rob["resize_0.5"]["auc"], "acc": rob["resize_0.5"]["acc"]},
            "train_s": round(secs, 1),
        }

    for family in args.families.split(","):
        det, secs = train(family, corpora)
        res["families"][family] = summarize(det, secs)
        print(family, json.dumps({k: v for k, v in res["families"][family].items() if not isinstance(v, dict)}), file=sys.stderr)

    default_family = args.families.split(",")[0]
    for p in corpora:  # train on one generator, test on each
        det, _ = train(default_family, [p])
        ev = evaluate(det, test_all)
        res["cross_generator"][fam_of[p]] = {k: v["auc"] for k, v in ev["per_generator"].items()}
        print("trained on", fam_of[p], res["cross_generator"][fam_of[p]], file=sys.stderr)
    for p in corpora:  # train on all but one, test on the held-out family
        det, _ = train(default_family, [q for q in corpora if q != p])
        ev = evaluate(det, test_all)
        res["leave_one_out"][fam_of[p]] = ev["per_generator"][fam_of[p]]["auc"]
        print("held out", fam_of[p], res["leave_one_out"][fam_of[p]], file=sys.stderr)
    if "default" in list_bundled():
        res["bundled_default"] = summarize(load_detector("default", device="cpu"), 0.0)

    res["meta"] = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, CPU",
        "command": "python benchmarks/detectors.py " + " ".join(sys.argv[1:]),
        "corpora": {fam_of[p]: str(p) for p in corpora},
        "test_images": {"real": int((test_all.labels == 0).sum()), "generated": int((test_all.labels == 1).sum())},
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    Path(str(out) + ".json").write_text(json.dumps(res, indent=2, default=float) + "\n")
    md = to_markdown(res)
    Path(str(out) + ".md").write_text(md)
    print(md)


def to_markdown(res: dict) -> str:
    f = lambda v: f"{v:.3f}"  # noqa: E731
    lines = ["| detector | AUC | AP | acc | TPR@1%FPR | ECE raw → calibrated | real-photo FPR | AUC JPEG 75 | AUC resize 0.5 | train s |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    rows = list(res["families"].items()) + ([("bundled default", res["bundled_default"])] if "bundled_default" in res else [])
    for name, r in rows:
        lines.append(f"| {name} | {f(r['auc'])} | {f(r['ap'])} | {f(r['acc'])} | {f(r['tpr_at_1pct_fpr'])} | "
                     f"{f(r['ece_uncalibrated'])} → {f(r['ece_calibrated'])} | {f(r['real_photo_fpr'])} | "
                     f"{f(r['jpeg_75']['auc'])} | {f(r['resize_0.5']['auc'])} | {r['train_s']} |")
    fams = sorted(res["cross_generator"])
    lines += ["", "Cross-generator AUC (rows: trained on; columns: tested on):", "",
              "| trained on | " + " | ".join(fams) + " |", "|---|" + "---|" * len(fams)]
    for tr in fams:
        lines.append(f"| {tr} | " + " | ".join(f(res["cross_generator"][tr].get(te, float("nan"))) for te in fams) + " |")
    lines += ["", "Leave one generator family out (AUC on the held-out family):", "",
              "| held out | " + " | ".join(fams) + " |", "|---|" + "---|" * len(fams),
              "| AUC | " + " | ".join(f(res["leave_one_out"][k]) for k in fams) + " |"]
    m = res["meta"]
    lines += ["", f"{m['date']}, {m['machine']}; `{m['command']}`; test split: {m['test_images']['real']} real, "
              f"{m['test_images']['generated']} generated images."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
