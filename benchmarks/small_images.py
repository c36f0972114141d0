"""Small images: how often does the default detector call a small photograph generated?

    python benchmarks/small_images.py --photos /tmp/exif-samples-jpg --photos /tmp/imagenet-samples \
        --out benchmarks/results/small-images

The default detector reads 128 px native-resolution crops; a smaller image is outside its
domain (code ``small``). This measures the verdict-relevant rate (p >= 0.5) on small
*photographs* at several sizes (each reduced with area averaging so that its long side is the
size, saved as JPEG 90, as thumbnails are; and its centre square at ``--fit-size``, the size of
the bundled generators' samples) and, beside it, on the bundled 32 px generators' samples; and
it fits the threshold above which a ``--fit-size`` square image's score counts (the card's
``small_threshold``) on half of the photographs, reporting the other half.

Photographs (none from the sources reserved for evaluation; neither folder is kept here):
the builtin photographs; every JPEG that decodes of the ``jpg/`` folder of
github.com/ianare/exif-samples at 5332a9c (CC BY-SA 4.0 as a repository, most images from
Wikimedia Commons, each with its own licence); the 1,000 JPEGs of
github.com/EliSchwartz/imagenet-sample-images at bc69043 (one ImageNet validation photograph
per class). Rebuild a folder from a snapshot with ``git cat-file blob`` of each JPEG blob.
"""

from __future__ import annotations

import argparse
import datetime
import io
import json
import os
import platform
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

SIZES = (32, 48, 64, 96, 100, 120)
GENERATORS = ("gan-digits", "vae-photos", "flow-photos", "diffusion-digits", "pixelcnn-photos")


def photos(folders: list[Path]):
    from genvis_trust.datasets.builtin import _PHOTOS
    from genvis_trust.io import load_image

    for key, _, resolve in _PHOTOS:
        if os.path.exists(resolve()):
            yield f"builtin/{key}", load_image(resolve()).array
    for folder in folders:
        for f in sorted(p for p in folder.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg")):
            try:
                a = load_image(str(f)).array
            except Exception:
                continue
            if min(a.shape[:2]) >= 16:
                yield f"{folder.name}/{f.relative_to(folder).as_posix()}", a


def thumbnail(a: np.ndarray, side: int, square: bool = False) -> tuple[np.ndarray, bytes]:
    """``a`` reduced (area averaging) so its long side is ``side`` (``square``: its centre
    square to ``side`` x ``side``), as JPEG 90 bytes."""
    from PIL import Image

    im = Image.fromarray(a)
    if square:
        s = min(im.size)
        left, top = (im.width - s) // 2, (im.height - s) // 2
        im = im.crop((left, top, left + s, top + s))
    f = side / max(im.size)
    im = im.resize((max(1, round(im.width * f)), max(1, round(im.height * f))), Image.BOX)
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=90)
    return np.asarray(im), buf.getvalue()


def _half(name: str) -> str:
    import hashlib

    return "fit" if hashlib.sha1(name.encode()).digest()[0] % 2 == 0 else "test"


def fit_small_threshold(rows: list[dict], size: int, fpr: float) -> dict:
    """The p above which a ``size`` px image counts: the ``1 - fpr`` quantile of p over the
    fitting half of the photo thumbnails at that size (never below 0.5), with the held-out
    half's rate and the bundled generators' samples (at ``size`` x ``size``) flagged."""
    photos = [r for r in rows if r["kind"] == "photo" and r["group"] == f"{size}x{size}"]
    fit = np.array([r["p"] for r in photos if _half(r["name"]) == "fit"])
    test = np.array([r["p"] for r in photos if _half(r["name"]) == "test"])
    t = round(max(0.5, float(np.quantile(fit, 1 - fpr, method="higher"))), 4)
    gen = {}
    for r in rows:
        if r["kind"] == "generated" and r["size"] == [size, size]:
            g = gen.setdefault(r["group"], {"n": 0, "flagged": 0})
            g["n"] += 1
            g["flagged"] += int(r["p"] >= t)
    return {"size": size, "fpr_budget": fpr, "threshold": t, "fit_n": len(fit), "fit_flagged": int((fit >= t).sum()),
            "test_n": len(test), "test_flagged": int((test >= t).sum()), "test_fpr": round(float((test >= t).mean()), 4),
            "generated": gen}


def p_by_group(rows: list[dict]) -> dict[str, list[float]]:
    """Every row's p (4 decimals), by group, in the order scanned: the data behind the table,
    small enough to keep (the names are rebuilt by rerunning the command)."""
    out: dict[str, list[float]] = {}
    for r in rows:
        if r["p"] is not None:
            out.setdefault(f"{r['kind']}/{r['group']}", []).append(round(r["p"], 4))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--photos", action="append", default=[], help="folder of photographs (JPEG); repeat for several")
    ap.add_argument("--n-generated", type=int, default=40, help="samples per bundled 32 px generator")
    ap.add_argument("--fit-size", type=int, default=32, help="size whose threshold is fitted (the card's small_sizes)")
    ap.add_argument("--fpr", type=float, default=0.05, help="share of photo thumbnails the threshold may flag")
    ap.add_argument("--out", default=None, help="path stem: writes STEM.json and STEM.md")
    args = ap.parse_args(argv)

    from genvis_trust.generators import load_generator
    from genvis_trust.scan import Scanner

    sc = Scanner("default", device="cpu", provenance=False, faces=False, check_stability=False)
    rows = []
    items, names = [], []
    for name, a in photos([Path(p) for p in args.photos]):
        if max(a.shape[:2]) <= max(SIZES):  # already small: as it is
            items.append(a)
            names.append(("photo", "native", name))
        for s in SIZES:
            if s < max(a.shape[:2]):
                items.append(thumbnail(a, s)[1])
                names.append(("photo", s, name))
        if args.fit_size < min(a.shape[:2]):  # at exactly the size the card knows
            items.append(thumbnail(a, args.fit_size, square=True)[1])
            names.append(("photo", f"{args.fit_size}x{args.fit_size}", name))
    for g in GENERATORS:
        gen = load_generator(g, "cpu")
        # the seeds benchmarks/detector_on_bundled.py tests on (10_000 and up), not training samples
        for k, a in enumerate(gen.sample(list(range(10_000, 10_000 + args.n_generated))).numpy()):
            a = np.asarray(a)
            if a.dtype != np.uint8:
                a = np.clip(a * 255.0 if a.max() <= 1.0 else a, 0, 255).astype(np.uint8)
            if a.ndim == 2:
                a = np.repeat(a[..., None], 3, 2)
            items.append(a)
            names.append(("generated", g, f"{g}-{k}"))
    for (kind, group, name), res in zip(names, sc.scan(items, names=[n[2] for n in names]), strict=True):
        d = res.to_dict()
        det = d.get("detector") or {}
        rows.append({"kind": kind, "group": str(group), "name": name, "size": [d["image"].get("width"), d["image"].get("height")],
                     "p": det.get("probability"), "ood": [o["code"] for o in det.get("out_of_domain") or []],
                     "verdict": d["verdict"]})
    sc.close()

    def rate(sel):
        sel = [r for r in sel if r["p"] is not None]
        return {"n": len(sel), "p_ge_0.5": sum(r["p"] >= 0.5 for r in sel),
                "likely_generated": sum(r["verdict"] == "likely_generated" for r in sel)}

    fit = fit_small_threshold(rows, args.fit_size, args.fpr)
    print(json.dumps(fit, indent=1))
    groups = sorted({(r["kind"], r["group"]) for r in rows}, key=lambda x: (x[0], len(x[1]), x[1]))
    table = {f"{k}/{g}": rate([r for r in rows if (r["kind"], r["group"]) == (k, g)]) for k, g in groups}
    rep = {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
           "machine": f"{platform.machine()}, {os.cpu_count()} cores, CPU",
           "command": "python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
           "groups": table, "small_threshold": fit, "p_by_group": p_by_group(rows)}
    print(json.dumps(table, indent=1))
    if args.out:
        stem = Path(args.out)
        stem.parent.mkdir(parents=True, exist_ok=True)
        stem.with_suffix(".json").write_text(json.dumps(rep, separators=(",", ":")) + "\n")
        lines = ["# Small images: verdicts of the default detector", "", f"{rep['date']}; {rep['machine']}; `{rep['command']}`", "",
                 "Scan without provenance, faces or the stability check (the detector's verdict alone).", "",
                 "| images | n | p >= 0.5 | verdict likely_generated |", "|---|---|---|---|"]
        for k, v in table.items():
            lines.append(f"| {k} | {v['n']} | {v['p_ge_0.5']} ({v['p_ge_0.5'] / max(v['n'], 1):.1%}) | "
                         f"{v['likely_generated']} ({v['likely_generated'] / max(v['n'], 1):.1%}) |")
        lines += ["", f"## A threshold for {args.fit_size}x{args.fit_size} images", "",
                  f"Fitted on half of the {args.fit_size} px photo thumbnails (split by the photograph's name), the "
                  f"{1 - args.fpr:.0%} quantile of their p (at least 0.5): **{fit['threshold']}**. On the other half "
                  f"(held out): {fit['test_flagged']} of {fit['test_n']} flagged ({fit['test_fpr']:.1%}; the fitting half "
                  f"{fit['fit_flagged']} of {fit['fit_n']}). The bundled 32 px generators' samples at that threshold:", "",
                  "| generator | n | flagged |", "|---|---|---|"]
        lines += [f"| {g} | {v['n']} | {v['flagged']} ({v['flagged'] / max(v['n'], 1):.0%}) |" for g, v in fit["generated"].items()]
        stem.with_suffix(".md").write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
