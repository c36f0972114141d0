"""Where in an image the detector's evidence is: region maps, the strongest-region rule and
localisation metrics against masks.

- :func:`region_map`: the detector's tile logits on a dense, overlapping grid (stride half a
  tile by default), placed on the image: :meth:`RegionMap.pixel_logits` gives every pixel
  the mean logit of the tiles covering it. The same network, codec and calibration as the
  whole-image score; only the tiles differ.
- :func:`strongest_region`: the rule ``scan`` applies to the tiles it already scored. Whole
  images are scored by the *mean* tile logit, so a small regenerated area is diluted; the
  rule reports the strongest tile when it stands out: its calibrated p is at least the
  threshold **and** its logit exceeds the median tile logit by at least ``REGION_MARGIN``.
  It needs ``MIN_TILES`` tiles (a "rest" to stand out from), and speaks only for inputs
  inside the detector's domain. Its measured behaviour on test photographs and spliced
  images is in docs/detection.md, "Regions and faces".
- :func:`localisation_metrics`: pixel AUC of the region map against a mask, and F1 and IoU of
  the map thresholded at the calibrated threshold (p >= 0.5).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

# The margin when a detector's card has none fitted (``region_rule.margin``, read by
# :func:`region_margin`): logit units (Platt a = 1: one unit of log-odds), the strongest tile
# e^2.5 ~ 12x the odds of the median one. Set before measuring, not fitted. The bundled default
# detector's card carries a margin fitted on validation photographs (benchmarks/regions.py --fit;
# benchmarks/results/regions.md); faces keep this one (not fitted for faces).
REGION_MARGIN = 2.5
MIN_TILES = 4
THRESHOLD = 0.5


@dataclass
class RegionMap:
    """Tile logits of one image on a (possibly overlapping) grid."""

    logits: np.ndarray  # per tile
    positions: list[tuple[int, int]]  # (y, x) of each tile's top-left corner
    patch: int
    stride: int
    shape: tuple[int, int]  # (h, w) of the image
    notes: list[str] = field(default_factory=list)

    def pixel_logits(self) -> np.ndarray:
        """``h x w`` float32: each pixel's mean over the tiles covering it (NaN where none)."""
        h, w = self.shape
        acc = np.zeros((h, w), np.float64)
        cnt = np.zeros((h, w), np.int32)
        for (y, x), z in zip(self.positions, self.logits, strict=True):
            acc[y : y + self.patch, x : x + self.patch] += z
            cnt[y : y + self.patch, x : x + self.patch] += 1
        with np.errstate(invalid="ignore"):
            return np.where(cnt > 0, acc / np.maximum(cnt, 1), np.nan).astype(np.float32)

    def grid(self) -> np.ndarray:
        """``rows x cols`` tile logits (for drawing: one cell per tile position)."""
        ys = sorted({y for y, _ in self.positions})
        xs = sorted({x for _, x in self.positions})
        out = np.full((len(ys), len(xs)), np.nan, np.float32)
        iy, ix = {y: i for i, y in enumerate(ys)}, {x: i for i, x in enumerate(xs)}
        for (y, x), z in zip(self.positions, self.logits, strict=True):
            out[iy[y], ix[x]] = z
        return out


def _starts(n: int, patch: int, stride: int) -> list[int]:
    s = list(range(0, n - patch + 1, stride))
    if s[-1] != n - patch:
        s.append(n - patch)  # the last tile aligned to the edge: every pixel covered
    return s


def dense_positions(h: int, w: int, patch: int, stride: int) -> list[tuple[int, int]]:
    """Top-left corners of ``patch`` tiles every ``stride`` pixels, edges included.

    >>> dense_positions(256, 200, 128, 64)
    [(0, 0), (0, 64), (0, 72), (64, 0), (64, 64), (64, 72), (128, 0), (128, 64), (128, 72)]
    """
    return [(y, x) for y in _starts(h, patch, stride) for x in _starts(w, patch, stride)]


def region_map(det, image: np.ndarray, *, stride: int | None = None, max_tiles: int = 1024) -> RegionMap:
    """Score ``image`` on a dense grid of the detector's tiles (stride ``patch // 2`` unless
    given; widened until at most ``max_tiles`` tiles). Images smaller than one tile are
    enlarged the way whole-image scoring does, and the map says so."""
    img = det.prepare(image)
    h, w = img.shape[:2]
    p = det.patch
    notes: list[str] = []
    if h < p or w < p:  # the whole-image path's enlargement; one tile, no localisation
        tiles, _, _, n = det.tiles(image, 1)
        z = det.logits(tiles)
        return RegionMap(np.full(1, float(z.mean()), np.float32), [(0, 0)], max(h, w), max(h, w), (h, w), n + ["smaller than one tile: no localisation"])
    stride = int(stride or max(1, p // 2))
    pos = dense_positions(h, w, p, stride)
    while len(pos) > max_tiles:
        stride = int(stride * 1.25) + 1
        pos = dense_positions(h, w, p, stride)
        notes = [f"stride widened to {stride}px to stay within {max_tiles} tiles"]
    tiles = np.stack([img[y : y + p, x : x + p] for y, x in pos])
    return RegionMap(det.logits(tiles), pos, p, stride, (h, w), notes)


@dataclass
class Region:
    """The strongest tile of a whole-image score and whether it stands out."""

    box: list[int]  # x, y, w, h in image pixels
    probability: float  # calibrated p of that tile
    logit: float
    median_logit: float  # of all the image's scored tiles
    margin: float  # logit - median_logit
    tiles: int  # tiles scored
    standing_out: int  # tiles passing the rule (the strongest among them is reported)
    fires: bool
    rule_margin: float = REGION_MARGIN  # the margin the rule was applied with
    # False where the detector's card says its fitted rule found no spliced region in validation:
    # a firing is then reported, but does not change the verdict
    changes_verdict: bool = True

    def to_dict(self) -> dict[str, Any]:
        d = {
            "box": self.box, "probability": round(self.probability, 4), "logit": round(self.logit, 4),
            "median_logit": round(self.median_logit, 4), "margin": round(self.margin, 4), "tiles": self.tiles,
            "standing_out": self.standing_out, "fires": self.fires,
            "rule": f"tile p >= {THRESHOLD} and tile logit - median tile logit >= {self.rule_margin:g}, at least {MIN_TILES} tiles",
        }
        if not self.changes_verdict:
            d["changes_verdict"] = False
        return d


def region_margin(det) -> float:
    """The rule's margin for ``det``: the one fitted for it (its card's ``region_rule.margin``),
    else :data:`REGION_MARGIN`. A margin is in the detector's own logit units, so it is
    fitted per detector."""
    m = ((getattr(det, "card", None) or {}).get("region_rule") or {}).get("margin")
    return REGION_MARGIN if m is None else float(m)


def strongest_region(det, score, *, margin: float | None = None) -> Region | None:
    """The rule on a :class:`~genvis_trust.detectors.detector.DetectionScore`'s own tiles
    (nothing re-scored); None when there are fewer than ``MIN_TILES`` tiles. ``margin``:
    :func:`region_margin` of ``det`` unless given."""
    margin = region_margin(det) if margin is None else float(margin)
    z = score.tile_logits
    if z is None or score.tile_positions is None or len(z) < MIN_TILES:
        return None
    z = np.asarray(z, np.float64)
    med = float(np.median(z))
    p = det.probabilities(z)
    passing = (p >= THRESHOLD) & (z - med >= margin)
    k = int(np.argmax(z))
    y, x = score.tile_positions[k]
    rule = (getattr(det, "card", None) or {}).get("region_rule") or {}
    return Region([int(x), int(y), det.patch, det.patch], float(p[k]), float(z[k]), med, float(z[k] - med),
                  len(z), int(passing.sum()), bool(passing[k]), margin, bool(rule.get("changes_verdict", True)))


def region_evidence(region: Region, image_p: float) -> dict[str, Any]:
    """The ``region`` evidence entry for a scan record."""
    x, y, w, h = region.box
    where = f"{w}x{h} at ({x}, {y})"
    if region.fires:
        text = (f"one region scores far above the rest: tile p(generated)={region.probability:.2f} {where}, "
                f"{region.margin:.1f} logits above the median tile; whole image p={image_p:.2f} "
                f"({region.standing_out} of {region.tiles} tiles stand out)")
        if not region.changes_verdict:
            text += ("; advisory only: for this detector the rule found no spliced region in validation, "
                     "so it does not change the verdict")
    else:
        text = (f"no region stands out: strongest tile p={region.probability:.2f} {where}, "
                f"{region.margin:.1f} logits above the median tile (rule: {region.rule_margin:g})")
    return {"kind": "region", "strength": "learned", "summary": text,
            "indicates": "edited" if region.fires and region.changes_verdict else "none", "details": region.to_dict()}


# -- localisation against masks

def binary_auc(labels: np.ndarray, scores: np.ndarray) -> float | None:
    """ROC AUC by ranks (ties count half); None when one class is missing.

    >>> binary_auc(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8]))
    0.75
    """
    labels = np.asarray(labels, bool).ravel()
    scores = np.asarray(scores, np.float64).ravel()
    n1 = int(labels.sum())
    n0 = labels.size - n1
    if n1 == 0 or n0 == 0:
        return None
    from scipy.stats import rankdata

    r = rankdata(scores)
    return float((r[labels].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def localisation_metrics(pixel_p: np.ndarray, mask: np.ndarray, threshold: float = THRESHOLD) -> dict[str, float | None]:
    """Pixel AUC, and F1 / IoU / precision / recall of ``pixel_p >= threshold`` against ``mask``.

    >>> m = np.zeros((4, 4), bool); m[:2] = True
    >>> localisation_metrics(np.where(m, 0.9, 0.1), m)["iou"]
    1.0
    """
    mask = np.asarray(mask, bool)
    valid = ~np.isnan(pixel_p)
    pred = (pixel_p >= threshold) & valid
    tp = int((pred & mask).sum())
    fp = int((pred & ~mask).sum())
    fn = int((~pred & mask).sum())
    f1 = 2 * tp / (2 * tp + fp + fn) if (2 * tp + fp + fn) else 1.0
    iou = tp / (tp + fp + fn) if (tp + fp + fn) else 1.0
    return {
        "auc": binary_auc(mask[valid], pixel_p[valid]),
        "f1": f1,
        "iou": iou,
        "precision": tp / (tp + fp) if tp + fp else None,
        "recall": tp / (tp + fn) if tp + fn else None,
        "mask_share": float(mask.mean()),
        "flagged_share": float(pred.mean()),
    }


def evaluate_localisation(det, items, *, stride: int | None = None, max_tiles: int = 1024, log=None,
                          margin: float | None = None) -> dict[str, Any]:
    """Localisation metrics over ``items`` of ``(name, image, mask)``: per image, the mean over
    images, and the pixel AUC pooled over every pixel of every image (images smaller than one
    tile are skipped and counted). The strongest-region rule is applied to each dense map too:
    ``rule_fires`` is the share of images where it fires, ``rule_hits`` the share where the
    strongest tile overlaps the mask (``margin``: :func:`region_margin` of ``det`` unless given)."""
    margin = region_margin(det) if margin is None else float(margin)
    per, pooled_y, pooled_s, skipped = [], [], [], []
    rng = np.random.default_rng(0)
    for name, image, mask in items:
        if min(image.shape[:2]) < det.patch:
            skipped.append(name)
            continue
        rm = region_map(det, image, stride=stride, max_tiles=max_tiles)
        z = rm.pixel_logits()
        pix_p = det.probabilities(np.nan_to_num(z, nan=-1e3).ravel()).reshape(z.shape)
        pix_p[np.isnan(z)] = np.nan
        m = localisation_metrics(pix_p, mask)
        zt = np.asarray(rm.logits, np.float64)
        k = int(np.argmax(zt))
        y, x = rm.positions[k]
        pk = float(det.probabilities(zt[k : k + 1])[0])
        m["rule_fires"] = bool(len(zt) >= MIN_TILES and pk >= THRESHOLD and zt[k] - np.median(zt) >= margin)
        m["rule_hit"] = bool(m["rule_fires"] and mask[y : y + rm.patch, x : x + rm.patch].any())
        m["image_p"] = float(det.probabilities(np.array([zt.mean()]))[0])
        m["name"] = name
        per.append(m)
        # pooled AUC on a fixed random sample of pixels per image (every image weighs the same)
        flat_ok = np.flatnonzero(~np.isnan(pix_p))
        pick = rng.choice(flat_ok, size=min(4096, flat_ok.size), replace=False)
        pooled_y.append(mask.ravel()[pick])
        pooled_s.append(z.ravel()[pick])
        if log:
            log(f"{name}: AUC {m['auc'] if m['auc'] is None else round(m['auc'], 3)}, F1 {m['f1']:.3f}, IoU {m['iou']:.3f}")
    def mean(k):
        v = [r[k] for r in per if r[k] is not None]
        return float(np.mean(v)) if v else None
    summary = {
        "images": len(per),
        "skipped_smaller_than_tile": len(skipped),
        "pixel_auc_pooled": binary_auc(np.concatenate(pooled_y), np.concatenate(pooled_s)) if per else None,
        "pixel_auc_mean": mean("auc"),
        "f1_mean": mean("f1"),
        "iou_mean": mean("iou"),
        "rule_fires": mean("rule_fires"),
        "rule_hits": mean("rule_hit"),
        "image_flagged": float(np.mean([r["image_p"] >= THRESHOLD for r in per])) if per else None,
        "threshold": THRESHOLD,
        "margin": margin,
        "stride": stride or det.patch // 2,
    }
    return {"summary": summary, "per_image": per}



def masked_items(source):
    """``(name, image, mask)`` for every record of a corpus source (its current split) that
    carries a mask; records without one are skipped."""
    corpus = getattr(source, "corpus", None)
    if corpus is None:
        return
    by_path = {r["path"]: r for r in corpus.records}
    for it in source.split_items():
        rec = by_path.get((it.meta or {}).get("path"))
        if rec is None or not rec.get("mask"):
            continue
        image = it.load()
        mask = corpus.load_mask(rec)
        if mask.shape != image.shape[:2]:
            from genvis_trust.datasets.corpus import CorpusError

            raise CorpusError(f"{corpus.root}: {rec['path']}: mask {mask.shape} does not match the image {image.shape[:2]}")
        yield rec["path"], image, mask


def has_masks(source) -> bool:
    corpus = getattr(source, "corpus", None)
    return corpus is not None and any(r.get("mask") for r in corpus.records)


__all__ = [
    "MIN_TILES", "REGION_MARGIN", "Region", "RegionMap", "binary_auc", "dense_positions", "evaluate_localisation",
    "has_masks", "localisation_metrics", "masked_items", "region_evidence", "region_map", "strongest_region",
]
