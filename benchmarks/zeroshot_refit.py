"""What a refitted zero-shot member changes: per-generator AUC and balanced accuracy of each member
alone, the bundled default as shipped, and the format shortcut, from the member scores of
``benchmarks/stack_member_scores.py``.

    python benchmarks/zeroshot_refit.py --scores DATA/members24-t8.json --members Z-zed64 Z24-zed64 \
        --out benchmarks/results/zeroshot-refit

- members alone: AUC (test photos vs each outside generator, same encoding) and balanced
  accuracy at a threshold keeping ``--fpr`` false positives on the *validation* photos (every
  form scored), FPR on the test photos;
- the bundled default with its shipped weights, bias, threshold and up-scaled head, on the same
  features (what "the current default" scores on these sets);
- the format shortcut: for photographs stored losslessly (PNG, TIFF, BMP), each member's logit
  shift from the original to its JPEG 90 copy, and the AUC with which each member separates
  JPEG-stored from losslessly stored photographs (0.5: no shortcut; content differs between
  sources, so this bounds rather than isolates it). A PNG re-save has the same pixels, so its
  scores are identical by construction (the cache key is the decoded pixels).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ENC = ("orig", "jpeg90", "resize512")
LOSSLESS = (".png", ".tif", ".tiff", ".bmp")


def auc(neg, pos) -> float:
    from genvis_trust.detectors.metrics import roc_auc

    neg, pos = np.asarray(neg, float), np.asarray(pos, float)
    return float(roc_auc(np.r_[np.zeros(len(neg)), np.ones(len(pos))], np.r_[neg, pos]))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scores", required=True)
    ap.add_argument("--members", nargs="+", required=True)
    ap.add_argument("--default", default="default", help="the shipped stack whose fixed combination is evaluated")
    ap.add_argument("--fpr", type=float, default=0.05)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()

    ev = json.loads(Path(args.scores).read_text())
    D = ev["detectors"]
    first = D[next(iter(D))]
    gens = sorted(g for g in first["logits"] if g not in ("real", "real_val") and not g.startswith(("bundled", "recon")))
    val_forms = [f for f in first["logits"]["real_val"] if not f.startswith("head_")]  # head_* forms feed only the up-scaled head (as in the stack script)
    res: dict = {"generators": gens, "members": {}, "meta": {"scores": args.scores, "scores_command": ev["meta"]["command"],
                                                             "command": "python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]])}}
    for m in args.members:
        L = D[m]["logits"]
        x0 = np.concatenate([L["real_val"][f] for f in val_forms])
        t = float(np.quantile(x0, 1 - args.fpr))
        r = {"threshold": t, "real_fpr": {f: float(np.mean(np.asarray(v) >= t)) for f, v in L["real"].items()}, "generators": {}}
        for g in gens:
            r["generators"][g] = {}
            for e in ENC:
                tpr = float(np.mean(np.asarray(L[g][e]) >= t))
                r["generators"][g][e] = {"auc": auc(L["real"][e], L[g][e]), "tpr": tpr, "ba": (tpr + 1 - r["real_fpr"][e]) / 2, "n": len(L[g][e])}
        r["mean"] = {e: {k: float(np.mean([r["generators"][g][e][k] for g in gens])) for k in ("auc", "ba")} for e in ENC}
        res["members"][m] = r

    # the shipped default on the same features
    from genvis_trust.detectors import load_detector

    det = load_detector(args.default, device="cpu")
    names = det.card["stacking"]["members"]
    w, b = det.net.weights.numpy().astype(float), float(det.net.bias)
    zt = float(det.calibration["threshold_logit"])
    head = (det.calibration.get("heads") or {}).get("upscaled")

    def flags(set_name, e):
        x = np.stack([np.asarray(D[n]["logits"][set_name][e], float) for n in names], 1)
        codes = D[names[0]]["domain_codes"][set_name][e]
        void = np.array([any(c != "small" for c in cs) for cs in codes])
        out = (x @ w + b >= zt) & ~void
        if head:
            only = np.array([list(cs) == ["upscaled"] for cs in codes])
            out |= only & (x @ np.asarray(head["weights"]) + head["bias"] >= head["threshold_logit"])
        return out

    dres = {"real_fpr": {f: float(np.mean(flags("real", f))) for f in first["logits"]["real"]}, "generators": {}}
    for g in gens:
        dres["generators"][g] = {e: {"tpr": float(np.mean(flags(g, e)))} for e in ENC}
        for e in ENC:
            dres["generators"][g][e]["ba"] = (dres["generators"][g][e]["tpr"] + 1 - dres["real_fpr"][e]) / 2
    dres["mean_ba"] = {e: float(np.mean([dres["generators"][g][e]["ba"] for g in gens])) for e in ENC}
    res["default_as_shipped"] = dres

    # format shortcut
    fmt: dict = {}
    for set_name in ("real", "real_val"):
        lossless = np.array([str(o.get("path", "")).lower().endswith(LOSSLESS) for o in ev["sets"][set_name]])
        for m in args.members:
            L = D[m]["logits"][set_name]
            o, j = np.asarray(L["orig"]), np.asarray(L["jpeg90"])
            fmt.setdefault(m, {})[set_name] = {
                "n_lossless": int(lossless.sum()), "n_jpeg": int((~lossless).sum()),
                "lossless_orig_to_jpeg90_shift_mean": float(np.mean(j[lossless] - o[lossless])),
                "jpeg_orig_to_jpeg90_shift_mean": float(np.mean(j[~lossless] - o[~lossless])),
                "auc_jpeg_stored_vs_lossless_stored": auc(o[lossless], o[~lossless]),
                "png_resave_max_abs_diff": float(np.max(np.abs(np.asarray(L.get("png_resave", L["orig"])) - o))),
            }
    res["format_shortcut"] = fmt
    out = Path(args.out)
    out.with_suffix(".json").write_text(json.dumps(res, indent=1) + "\n")
    lines = [f"Members alone (threshold at {args.fpr:.0%} FPR on validation photos, forms {', '.join(val_forms)}): AUC / balanced accuracy, orig / JPEG 90 / 512", "",
             "| generator | n | " + " | ".join(args.members) + " | default as shipped (BA) |", "|---|---|" + "---|" * (len(args.members) + 1)]
    for g in gens:
        cells = [" / ".join(f"{res['members'][m]['generators'][g][e]['auc']:.2f}" for e in ENC) + " ; " +
                 " / ".join(f"{res['members'][m]['generators'][g][e]['ba']:.2f}" for e in ENC) for m in args.members]
        lines.append(f"| {g} | {res['members'][args.members[0]]['generators'][g]['orig']['n']} | " + " | ".join(cells) + " | "
                     + " / ".join(f"{dres['generators'][g][e]['ba']:.2f}" for e in ENC) + " |")
    lines.append("| **mean** | | " + " | ".join(" / ".join(f"{res['members'][m]['mean'][e]['auc']:.3f}" for e in ENC) + " ; " +
                                               " / ".join(f"{res['members'][m]['mean'][e]['ba']:.3f}" for e in ENC) for m in args.members)
                 + " | " + " / ".join(f"{dres['mean_ba'][e]:.3f}" for e in ENC) + " |")
    lines += ["", "Test-photo FPR: " + "; ".join(f"{m}: " + ", ".join(f"{f} {v:.3f}" for f, v in res["members"][m]["real_fpr"].items()) for m in args.members)
              + "; default as shipped: " + ", ".join(f"{f} {v:.3f}" for f, v in dres["real_fpr"].items()), "",
              "Format shortcut: " + json.dumps(fmt), "", f"`{res['meta']['command']}`; scores from `{res['meta']['scores_command']}`"]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
