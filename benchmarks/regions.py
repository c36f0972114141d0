"""The strongest-region rule on real photographs, and localisation on spliced corpora.

    python benchmarks/regions.py --photos-split val --photos-split test --spliced SPLICED_VAL --spliced SPLICED_TEST \
        --fit photos-native/val --out benchmarks/results/regions.json

``--fit SET``: the rule's margin is fitted on that photo set (every form of it pooled): the
smallest margin on a 0.05-logit grid at which the rule fires on at most ``--max-fire`` (5%) of
its assessed photographs. The fitted margin is then applied to every set, and the spliced
images are scored against their masks: the rule *hits* when it fires and the tile it reports
overlaps the mask; its box's IoU with the mask is recorded.

For every real photograph (the photo corpus's given splits, plus builtin-photos) in three forms
(as stored, JPEG 90, long side 512) the whole-image score is computed the way ``scan`` does it
(non-overlapping tiles, at most 64) and the rule's statistic kept: the strongest tile's p and
its margin over the median tile. The fire rate is tabulated over a grid of margins, counting
only images inside the detector's domain (the rule is silent elsewhere), together with how
often it fires on spliced images (same statistic on the same tiles) and how often the
whole-image verdict already flags them. On the spliced corpora the dense region map is also
scored against the masks (:func:`genvis_trust.regions.evaluate_localisation`).
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from genvis_trust.datasets import get_source
from genvis_trust.datasets.perturbations import create_perturbation
from genvis_trust.detectors import load_detector
from genvis_trust.regions import MIN_TILES, THRESHOLD, evaluate_localisation, masked_items

MARGINS = [1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 5.0]
FIT_GRID = np.round(np.arange(0.0, 12.0001, 0.05), 2)


def long_side(img: np.ndarray, side: int = 512) -> np.ndarray:
    h, w = img.shape[:2]
    f = side / max(h, w)
    if f >= 1:
        return img
    return cv2.resize(img, (round(w * f), round(h * f)), interpolation=cv2.INTER_AREA)


def png_resave(img: np.ndarray) -> np.ndarray:
    ok, buf = cv2.imencode(".png", img[..., ::-1])
    if not ok:
        raise RuntimeError("PNG encoding failed")
    return np.ascontiguousarray(cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1])


def rule_stats(det, images: list[np.ndarray], chunk: int = 8) -> list[dict]:
    """The rule's statistic on the tiles ``scan`` scores (scored ``chunk`` images at a time, so
    that tiles of native-size photographs do not pile up in memory)."""
    out = []
    for i in range(0, len(images), chunk):
        part = images[i : i + chunk]
        for im, s in zip(part, det.score_many(part), strict=True):
            z = np.asarray(s.tile_logits, np.float64)
            k = int(np.argmax(z))
            y, x = s.tile_positions[k]
            pk = float(det.probabilities(z[k : k + 1])[0])
            out.append({"tiles": len(z), "image_p": s.probability, "max_p": pk, "margin": float(z[k] - np.median(z)),
                        "box": [int(x), int(y), det.patch, det.patch], "shape": list(im.shape[:2]),
                        "in_domain": not det.domain_check(im), "enough_tiles": len(z) >= MIN_TILES})
    return out


def fires(s: dict, margin: float) -> bool:
    return bool(s["in_domain"] and s["enough_tiles"] and s["max_p"] >= THRESHOLD and s["margin"] >= margin)


def fit_margin(stats: list[dict], max_fire: float) -> tuple[float | None, float]:
    """The smallest grid margin at which the rule fires on at most ``max_fire`` of the assessed
    images of ``stats``, and the rate there (None: no margin of the grid is that quiet)."""
    ok = [s for s in stats if s["in_domain"] and s["enough_tiles"]]
    for m in FIT_GRID:
        rate = float(np.mean([fires(s, m) for s in ok])) if ok else 0.0
        if rate <= max_fire:
            return float(m), rate
    return None, 1.0


def box_vs_mask(box: list[int], mask: np.ndarray) -> tuple[bool, float]:
    """Whether the tile ``box`` (x, y, w, h) covers a masked pixel, and its IoU with the mask."""
    x, y, w, h = box
    inside = int(mask[y : y + h, x : x + w].sum())
    area = int(mask[y : y + h, x : x + w].size)
    union = area + int(mask.sum()) - inside
    return inside > 0, (inside / union if union else 0.0)


def at_margin(stats: list[dict], margin: float, masks: list[np.ndarray] | None = None) -> dict:
    """Fire rate at ``margin`` over the assessed images; with masks, hits and box IoU too."""
    idx = [i for i, s in enumerate(stats) if s["in_domain"] and s["enough_tiles"]]
    res = {"margin": margin, "n": len(stats), "n_assessed": len(idx),
           "fires": int(sum(fires(stats[i], margin) for i in idx)),
           "image_flagged": int(sum(stats[i]["image_p"] >= THRESHOLD for i in idx))}
    res["fire_rate"] = res["fires"] / len(idx) if idx else None
    if masks is not None:
        hits, ious = [], []
        for i in idx:
            on_mask, iou = box_vs_mask(stats[i]["box"], masks[i])
            f = fires(stats[i], margin)
            hits.append(f and on_mask)
            ious.append(iou if f else 0.0)
        res["hits"] = int(sum(hits))
        res["hit_rate"] = res["hits"] / len(idx) if idx else None
        res["box_iou_mean"] = float(np.mean(ious)) if ious else None  # 0 where the rule is silent
        fired = [v for v, i in zip(ious, idx, strict=True) if fires(stats[i], margin)]
        res["box_iou_mean_when_fired"] = float(np.mean(fired)) if fired else None
    return res


def fire_rates(stats: list[dict]) -> dict:
    ok = [s for s in stats if s["in_domain"] and s["enough_tiles"]]
    res = {"n": len(stats), "n_assessed": len(ok), "image_flagged": float(np.mean([s["image_p"] >= THRESHOLD for s in stats])) if stats else None}
    for m in MARGINS:
        fires = [s["max_p"] >= THRESHOLD and s["margin"] >= m for s in ok]
        added = [f and s["image_p"] < THRESHOLD for f, s in zip(fires, ok, strict=True)]
        res[f"fires@{m}"] = float(np.mean(fires)) if ok else None
        res[f"adds@{m}"] = float(np.mean(added)) if ok else None
    return res


def paired(det, a, res) -> int:
    """Each spliced image beside the same crop of its untouched photograph: the rule's statistic
    on the tiles scan reads, and the dense map against the mask."""
    from genvis_trust.datasets.corpus import read_corpus
    from genvis_trust.io import load_image

    photos = {it.key: it for it in get_source("photos-native").items()}
    corpus = read_corpus(a.paired)
    records = [r for r in corpus.records if r.get("mask")][: a.limit]
    res["paired"] = {"corpus": a.paired, "rows": []}
    for r in records:
        spl = r["meta"]["spliced_from"]
        photo = photos[spl["key"]].load()
        if spl.get("crop"):
            x, y, w, h = spl["crop"]
            photo = photo[y : y + h, x : x + w]
        image, mask = load_image(corpus.file(r)).array, corpus.load_mask(r)
        st_photo, st_spliced = rule_stats(det, [photo, image])
        loc = evaluate_localisation(det, [(r["path"], image, mask)])
        res["paired"]["rows"].append({"name": r["path"], "photo": st_photo, "spliced": st_spliced,
                                      "localisation": loc["per_image"][0] if loc["per_image"] else None})
        Path(a.out).write_text(json.dumps(res, indent=1, default=float) + "\n")
        print(f"{r['path']}: photo margin {st_photo['margin']:.2f} max p {st_photo['max_p']:.2f}; spliced margin "
              f"{st_spliced['margin']:.2f} max p {st_spliced['max_p']:.2f}", file=sys.stderr)
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--photos-split", action="append", default=[], help="split of photos-native to read (repeat)")
    ap.add_argument("--builtin", action="store_true", help="also builtin-photos (all 11)")
    ap.add_argument("--spliced", action="append", default=[], help="spliced corpus folder (repeat)")
    ap.add_argument("--paired", help="spliced corpus of photos-native: score each spliced image and the same crop of its "
                    "untouched photograph, image by image (results written after each one)")
    ap.add_argument("--limit", type=int, default=None, help="with --paired: at most this many images")
    ap.add_argument("--detector", default="default")
    ap.add_argument("--forms", default="stored,jpeg90,long512,png", help="photo forms, comma-separated")
    ap.add_argument("--fit", help="photo set to fit the margin on (e.g. photos-native/val), every form pooled")
    ap.add_argument("--max-fire", type=float, default=0.05, help="fire rate the fitted margin allows on --fit")
    ap.add_argument("--out", required=True, help="results JSON (rewritten after every set, so a partial run keeps what it measured)")
    a = ap.parse_args(argv)
    det = load_detector(a.detector, device="cpu")
    det.optimize_for_inference()
    forms = {"stored": lambda x: x, "jpeg90": create_perturbation("jpeg", quality=90), "long512": long_side,
             "png": png_resave}
    res = {"command": "python " + " ".join(shlex.quote(x) for x in sys.argv), "date": time.strftime("%Y-%m-%d"),
           "machine": f"{platform.machine()} {platform.processor() or ''}, no GPU", "detector": det.name, "margins": MARGINS,
           "photos": {}, "spliced": {}}
    if a.paired:
        return paired(det, a, res)
    sets = [(f"photos-native/{sp}", get_source("photos-native", split=sp)) for sp in a.photos_split]
    if a.builtin:
        sets.append(("builtin-photos", get_source("builtin-photos")))
    for name, src in sets:
        imgs = [s.image for s in src.samples()]
        for form in a.forms.split(","):
            fn = forms[form]
            t0 = time.time()
            st = rule_stats(det, [fn(im) for im in imgs])
            res["photos"][f"{name} {form}"] = {**fire_rates(st), "per_image": st}
            print(f"{name} {form}: {len(st)} images in {time.time() - t0:.0f}s", file=sys.stderr)
            Path(a.out).write_text(json.dumps(res, indent=1, default=float) + "\n")
    fitted = None
    if a.fit:
        fit_stats = [s for k, v in res["photos"].items() if k.split(" ")[0] == a.fit for s in v["per_image"]]
        if not fit_stats:
            raise SystemExit(f"--fit {a.fit}: no such photo set among {sorted(res['photos'])}")
        fitted, rate = fit_margin(fit_stats, a.max_fire)
        res["fit"] = {"set": a.fit, "forms": a.forms.split(","), "max_fire": a.max_fire, "grid_step": 0.05,
                      "margin": fitted, "fire_rate": rate, "assessed": sum(s["in_domain"] and s["enough_tiles"] for s in fit_stats)}
        print(f"fitted margin on {a.fit}: {fitted} (fires on {rate:.3f})", file=sys.stderr)
        res["at_fitted"] = {k: at_margin(v["per_image"], fitted) for k, v in res["photos"].items()} if fitted is not None else {}
    for path in a.spliced:
        src = get_source(path)
        items = list(masked_items(src))
        t0 = time.time()
        st = rule_stats(det, [im for _, im, _ in items])
        # the dense map is judged with the margin the rule uses: the fitted one when there is one
        loc = evaluate_localisation(det, items, margin=fitted)
        res["spliced"][path] = {**fire_rates(st), "localisation": loc["summary"], "per_image": st, "per_image_localisation": loc["per_image"]}
        if fitted is not None:
            res["at_fitted"][path] = at_margin(st, fitted, [m for _, _, m in items])
        print(f"{path}: {len(items)} images in {time.time() - t0:.0f}s: {loc['summary']}", file=sys.stderr)
        Path(a.out).write_text(json.dumps(res, indent=1, default=float) + "\n")
    Path(a.out).write_text(json.dumps(res, indent=1, default=float) + "\n")
    for k, v in res.get("at_fitted", {}).items():
        print(f"at the fitted margin {fitted}: {k}: {json.dumps(v)}")
    rows = [("set", "n", "assessed", "image p>=0.5", *(f"fires@{m}" for m in MARGINS))]
    for k, v in {**res["photos"], **res["spliced"]}.items():
        rows.append((k, v["n"], v["n_assessed"], f"{v['image_flagged']:.3f}", *(f"{v[f'fires@{m}']:.3f}" for m in MARGINS)))
    for r in rows:
        print(" | ".join(map(str, r)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
