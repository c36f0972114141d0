#!/usr/bin/env python3
"""Stack member detectors (learned and zero-shot), with leave-one-generator-out numbers, and build
the bundled default from the fit on every development generator.

    python scripts/stack_realworld.py --eval benchmarks/results/realworld-members.json \
        --member RUNS/C2 --member RUNS/Z [--member RUNS/D --domain-from RUNS/D --upscaled-head] \
        --fpr 0.05 --out-results benchmarks/results/realworld \
        [--out-detector genvis_trust/assets/detectors/default]

(``--learned A --zeroshot B`` is the same as ``--member A --member B``.)

Input: the JSON(s) written by ``benchmarks/detectors_realworld.py --with-val`` for the member
detectors (image-level logits of every image of every set and encoding; several files with the
same sets are merged). Features per image: the members' image-level logits. The domain (which
inputs scan voids, and why) is that of ``--domain-from`` (default: the first member). Fitting data, never the test images:
- class 0: the validation split of the photo corpus, as stored and re-shipped (JPEG 90 and 40,
  long side 512, up-scaled 2x, 60% crop, letterbox, PNG re-save);
- class 1: the validation split of the aligned reconstructions and the outside generators'
  samples of the development set, minus the generator being held out.
The threshold keeps the false-positive rate on the validation photos at ``--fpr``.

Reported per held-out generator (so each number is on a generator the stack was not fitted
on): TPR, and balanced accuracy against the *test* photos under the same encoding; plus the
false-positive rate on the test photos and their re-shipped versions. The members alone, with
only the FPR threshold fitted on validation photos (no generated image used at all), are
reported beside it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from genvis_trust.detectors.stacking import (
    HEAD,
    build_stack,
    fit_logistic,
    resolve_members,
    threshold_only,
)

ENCODINGS = ("orig", "jpeg90", "resize512")
SKIP = ("bundled:", "bundled_val:")  # the toolkit's own generators: not outside generators
# HEAD ("upscaled"): inputs voided for this reason alone get their own head (--upscaled-head)


def own(name: str) -> bool:
    """The toolkit's own sets (bundled generators, aligned reconstructions): not outside generators."""
    return name.startswith(SKIP) or name.endswith("-recon")


def merge_scores(evs: list[dict]) -> dict:
    """Every eval file's detectors, a detector's sets and encodings merged across files (a later
    ``--val-only`` run adds validation forms to an earlier full run of the same detector)."""
    out: dict = {}
    for e in evs:
        for k, v in e["detectors"].items():
            d = out.setdefault(k, {})
            for field, val in v.items():
                if field in ("logits", "out_of_domain", "domain_codes", "heads") and isinstance(val, dict):
                    for set_name, encs in val.items():
                        d.setdefault(field, {}).setdefault(set_name, {}).update(encs)
                elif field not in d:
                    d[field] = val
    return out


def features(members: dict, set_name: str, enc: str) -> np.ndarray:
    return np.stack([np.asarray(m["logits"][set_name][enc], float) for m in members.values()], 1)


def void(dom: dict, set_name: str, enc: str) -> np.ndarray:
    """Inputs outside the stack's domain (scan reports no detector evidence for them); ``dom``:
    the eval entry of the member whose domain the stack declares."""
    flags = (dom.get("out_of_domain") or {}).get(set_name, {}).get(enc)
    return np.asarray(flags, bool) if flags is not None else np.zeros(len(dom["logits"][set_name][enc]), bool)


def head_only(dom: dict, set_name: str, enc: str) -> np.ndarray:
    """Inputs outside the main domain for the head's reason alone (the head scores them)."""
    codes = (dom.get("domain_codes") or {}).get(set_name, {}).get(enc)
    if codes is None:
        return np.zeros(len(dom["logits"][set_name][enc]), bool)
    return np.array([list(c) == [HEAD] for c in codes], bool)


def flagged(members: dict, dom: dict, set_name: str, enc: str, w, b, z_t, head=None) -> np.ndarray:
    x = features(members, set_name, enc)
    out = (x @ w + b >= z_t) & ~void(dom, set_name, enc)
    if head is not None:
        hw, hb, hz = head
        out |= head_only(dom, set_name, enc) & (x @ hw + hb >= hz)
    return out


# the fit itself lives in the package, shared with `genvis-trust detectors stack`
fit = fit_logistic


def evaluate(members, dom, w, b, z_t, held: list[str], head=None) -> dict:
    real = {}
    for v in members[next(iter(members))]["logits"]["real"]:
        real[v] = float(np.mean(flagged(members, dom, "real", v, w, b, z_t, head)))
    out = {"real_fpr": real, "generators": {}}
    for g in held:
        out["generators"][g] = {}
        for enc in ENCODINGS:
            tpr = float(np.mean(flagged(members, dom, g, enc, w, b, z_t, head)))
            out["generators"][g][enc] = {"tpr": tpr, "balanced_acc": (tpr + 1 - real[enc]) / 2, "n": len(members[next(iter(members))]["logits"][g][enc])}
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--eval", action="append", required=True, help="detectors_realworld.py JSON (with --with-val) of the members")
    ap.add_argument("--member", action="append", default=[], help="a member detector (its path as in the eval JSON), in order")
    ap.add_argument("--learned", help="same as a first --member")
    ap.add_argument("--zeroshot", help="same as a --member after --learned")
    ap.add_argument("--domain-from", help="the member whose domain the stack declares (default: the first)")
    ap.add_argument("--domain-set", help="JSON object merged into that domain, e.g. the small-image fields the bundled default "
                    "carries: '{\"small_sizes\": [[32, 32]], \"small_threshold\": 0.5632}' (fitted by benchmarks/small_images.py "
                    "on the rebuilt detector, not copied)")
    ap.add_argument("--fpr", type=float, default=0.05)
    ap.add_argument("--out-results", required=True)
    ap.add_argument("--out-detector")
    ap.add_argument("--free-voided", action="store_true", help="out-of-domain validation photos do not constrain the threshold")
    ap.add_argument("--upscaled-head", action="store_true",
                    help="fit a second head for inputs voided only as up-scaled: validation photos in that state (class 0, "
                         "its own FPR budget) vs every validation generated image in that state (class 1)")
    args = ap.parse_args()

    args.member = [m for m in (args.learned, args.zeroshot) if m] + args.member
    if len(args.member) < 2:
        ap.error("a stack needs at least two members (--member ... --member ...)")
    evs = [json.loads(Path(e).read_text()) for e in args.eval]
    metas = [m for e in evs for m in (e.get("meta") if isinstance(e.get("meta"), list) else [e.get("meta")])]
    ev = {"detectors": merge_scores(evs), "meta": metas}
    missing = [m for m in args.member if m not in ev["detectors"]]
    if missing:
        ap.error(f"no scores for {missing} in {args.eval}")
    members = {k: ev["detectors"][k] for k in args.member}
    dom = members[args.domain_from or args.member[0]]
    first = members[args.member[0]]["logits"]
    gens = sorted(g for g in first if g not in ("real", "real_val", "recon_val") and not own(g))
    own_val = sorted(g for g in first if g.startswith("bundled_val:"))  # the toolkit's generators, seeds 20000+
    # class 0: the validation photos as stored and in every re-shipped form (JPEG 40, up-scaled,
    # cropped, letterboxed, ...), so the threshold's FPR budget covers re-shipped photos too
    # Inputs the scan voids as out of domain (e.g. up-scaled) are never flagged. By default they
    # still constrain the threshold (the conservative choice: a photograph the rule misses is
    # scored like one it catches); --free-voided lets the threshold ignore them (more detections,
    # measured FPR 0.06-0.08 on JPEG 90 and crops: benchmarks/results/transfer-log.md).
    keep0 = (lambda e: ~void(dom, "real_val", e)) if args.free_voided else (lambda e: slice(None))
    # the head_* forms (more up-scalings, benchmarks/detectors_realworld.py HEAD_VAL_VARIANTS) only
    # feed the up-scaled head's class 0; the main threshold sees the same forms as the test photos
    x0 = np.concatenate([features(members, "real_val", e)[keep0(e)] for e in first["real_val"] if not e.startswith("head_")])

    pos_sets = [s for s in ("recon_val", *own_val) if s in first]  # a run without reconstructions or bundled samples has none

    def positives(exclude: str | None, keep=lambda s, e: ~void(dom, s, e)):
        parts = [features(members, s, e)[keep(s, e)] for s in pos_sets for e in ENCODINGS if e in first[s]]
        parts += [features(members, g, e)[keep(g, e)] for g in gens if g != exclude for e in ENCODINGS]
        return np.concatenate(parts)

    def fit_head(exclude: str | None):
        """The up-scaled head: validation photos voided only as up-scaled (every re-shipped form)
        vs every validation generated image voided only as up-scaled."""
        if not args.upscaled_head:
            return None
        h0 = np.concatenate([features(members, "real_val", e)[head_only(dom, "real_val", e)] for e in first["real_val"]])
        h1 = positives(exclude, keep=lambda s, e: head_only(dom, s, e))
        if len(h0) < 10 or len(h1) < 10:
            raise SystemExit(f"too few up-scaled validation inputs for a head: {len(h0)} photos, {len(h1)} generated")
        return fit(h0, h1, args.fpr)

    res: dict = {"fpr_budget": args.fpr, "free_voided": args.free_voided, "upscaled_head": args.upscaled_head,
                 "generators": gens, "logo": {}, "members_alone": {}}
    own_test = [g for g in first if g.startswith("bundled:") or g.endswith("-recon")]
    res["member_names"] = names = member_names(args.member, members)
    for col, name in enumerate(names):
        w, b, z_t = threshold_only(x0, col, args.fpr)
        res["members_alone"][name] = evaluate(members, dom, w, b, z_t, gens + own_test)
    for g in gens:  # leave one generator out
        w, b, z_t = fit(x0, positives(g), args.fpr)
        head = fit_head(g)
        r = evaluate(members, dom, w, b, z_t, [g], head)
        res["logo"][g] = {**r["generators"][g], "real_fpr": r["real_fpr"], "weights": w.tolist(), "bias": b, "threshold": z_t}
    w, b, z_t = fit(x0, positives(None), args.fpr)
    head = fit_head(None)
    final = evaluate(members, dom, w, b, z_t, own_test, head)
    res["final"] = {"weights": w.tolist(), "bias": b, "threshold": z_t, **final,
                    "note": "fitted on every development generator: these are not unseen; see logo"}
    if head is not None:
        res["final"]["head"] = {"name": HEAD, "weights": head[0].tolist(), "bias": head[1], "threshold": head[2]}
    res["meta"] = {"date": time.strftime("%Y-%m-%d"), "command": "python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
                   "eval": args.eval, "eval_meta": ev.get("meta")}
    out = Path(args.out_results)
    out.with_suffix(".json").write_text(json.dumps(res, indent=1) + "\n")
    out.with_suffix(".md").write_text(markdown(res) + "\n")
    print(markdown(res))

    if args.out_detector:
        build_default(args, w, b, z_t, res, head)
    return 0


def member_names(paths: list[str], members: dict) -> list[str]:
    """Short, unique column names for the members (their folder names)."""
    names = []
    for p in paths:
        n = Path(p).name
        names.append(n if n not in names else f"{n}-{len(names)}")
    return names


def markdown(res: dict) -> str:
    names = res["member_names"]
    lines = [f"Balanced accuracy per generator (TPR at a threshold keeping {res['fpr_budget']:.0%} false positives on validation photos; "
             "FPR from the test photos under the same encoding). **stack (LOGO)**: fitted without the generator in that row. "
             "Members alone: threshold only, no generated image used."
             + (" Inputs voided only as up-scaled are decided by the stack's up-scaled head." if res.get("upscaled_head") else ""), "",
             "| generator | n | stack (LOGO) orig / JPEG 90 / 512 | " + " | ".join(f"{n} alone" for n in names) + " |",
             "|---|---|---|" + "---|" * len(names)]
    ma = res["members_alone"]

    def cells(d):
        return " / ".join(f"{d[e]['balanced_acc']:.2f}" for e in ENCODINGS)

    for g, r in res["logo"].items():
        lines.append(f"| {g} | {r['orig']['n']} | {cells(r)} | " + " | ".join(cells(ma[n]['generators'][g]) for n in names) + " |")
    for g, fr in res["final"]["generators"].items():
        lines.append(f"| {g} (final stack) | {fr['orig']['n']} | {cells(fr)} | " + " | ".join(cells(ma[n]['generators'][g]) for n in names) + " |")
    sens = sensitivity(res)
    lines += ["", "Pooled over every outside generator's samples, each generator held out (what a below-threshold score is worth on "
              "a generator the stack never saw): flagged " + " / ".join(f"{sens[e]['tpr_pooled']:.3f}" for e in ENCODINGS)
              + " (orig / JPEG 90 / 512), against test-photo false positives " + " / ".join(f"{sens[e]['real_fpr']:.3f}" for e in ENCODINGS) + "."]
    variants = list(res["final"]["real_fpr"])
    lines += ["", "False-positive rate on the test photos (final stack; each member alone):", "",
              "| | " + " | ".join(variants) + " |", "|---|" + "---|" * len(variants)]
    for label, d in (("final stack", res["final"]), *((f"{n} alone", ma[n]) for n in names)):
        lines.append(f"| {label} | " + " | ".join(f"{d['real_fpr'][v]:.3f}" for v in variants) + " |")
    m = res["meta"]
    evm = m.get("eval_meta") or []
    evm = evm if isinstance(evm, list) else [evm]
    lines.append(f"\n{m['date']}; `{m['command']}`; member scores from " + "; ".join(f"`{(e or {}).get('command')}`" for e in evm))
    return "\n".join(lines)


def sensitivity(res: dict) -> dict:
    """What a "no evidence" from the stack is worth on generators it never saw: the share of the
    outside generators' samples it flags at its threshold, each generator held out of the fit
    (LOGO), pooled over samples and as the median generator, per encoding; beside the false-positive
    rate on test photographs in the same encoding. ``scan`` quotes it under a below-threshold score."""
    out = {"what": "share of unseen outside generators' samples flagged at the threshold (leave-one-generator-out, development set)",
           "generators": len(res["logo"]), "fpr_budget": res["fpr_budget"]}
    for e in ENCODINGS:
        t = [(r[e]["tpr"], r[e]["n"]) for r in res["logo"].values()]
        n = sum(k for _, k in t)
        out[e] = {"tpr_pooled": round(sum(v * k for v, k in t) / max(n, 1), 3), "tpr_median_generator": round(float(np.median([v for v, _ in t])), 3),
                  "tpr_best_generator": round(max(v for v, _ in t), 3), "samples": n,
                  "real_fpr": round(res["final"]["real_fpr"].get(e, float("nan")), 3)}
    return out


def build_default(args, w, b, z_t, res, head=None) -> None:
    members, dets = resolve_members(args.member)
    dom = dets[args.member.index(args.domain_from)] if args.domain_from else dets[0]
    det = build_stack(members, w, b, z_t, args.fpr, max_tiles=dom.max_tiles, head=head)
    names = res["member_names"]
    card = {
        "name": "default",
        "summary": "stack of learned NPR detectors (real photographs vs aligned reconstructions and the bundled generators' samples) "
                   "and the zero-shot zed coding-cost statistic" + ("; inputs that look up-scaled are decided by a head of their own" if head else ""),
        "domain": {**(dom.card.get("domain") or {}), **json.loads(args.domain_set or "{}")} or None,
        "members": {n: {"artifact": Path(p).name, "family": d.family, "weights_sha256": d.sha256,
                        "card": {k: d.card.get(k) for k in ("command", "data", "metrics", "wall_time_s")}}
                    for n, p, d in zip(names, args.member, dets, strict=True)},
        "stacking": {"members": names, "weights": [float(v) for v in w], "bias": float(b), "threshold_logit": z_t, "fpr_budget": args.fpr,
                     "fitted_on": "validation photos (class 0) vs validation reconstructions, the bundled generators' validation samples "
                                  "(seeds 20000+) and every development-set outside generator (class 1)",
                     "free_voided": args.free_voided, "development_generators": res["generators"],
                     "heads": res["final"].get("head")},
        "sensitivity": sensitivity(res),
        "results": {"logo": str(Path(args.out_results).with_suffix(".md")), "final_real_fpr": res["final"]["real_fpr"],
                    "bundled_generators": {g: {e: round(v["balanced_acc"], 3) for e, v in r.items()} for g, r in res["final"]["generators"].items()}},
        "not_expected_to_detect": [
            "generators whose samples are JPEG-compressed below ~0.5 bits per pixel, resized by more than 2x, or screenshotted",
            "most outside generators of the development set at the 5% false-positive budget: see the LOGO results",
            "GAN faces (StyleGAN) and class-conditional ImageNet models (BigGAN, DiT) in the development set: near chance",
            "local edits (inpainting, face swaps) of a small region: tiles are averaged",
            "graphics, drawings, screenshots and renders: outside the photographic domain (the scan says so)",
        ],
        "reserved_sources_used": False,
        "command": "python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
    }
    det.save(args.out_detector, card=card)
    print(f"wrote {args.out_detector}")


if __name__ == "__main__":
    sys.exit(main())
