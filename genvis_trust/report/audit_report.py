"""The audit report: a place to work through a folder's verdicts.

``OUT/report.html`` lists every file (thumbnail, verdict, strongest evidence, p) by what
matters first (tampered, generated, likely generated, errors, uncertain, no evidence, then
skipped non-media), sortable and filterable by verdict, flag, signal, folder and name, a page
of rows at a time (so 10,000 rows stay responsive); a caveat repeated across rows (a
detector's out-of-domain sentence) is stated once under the list and referenced per row;
each row links to a page of its own
(``OUT/report/files/NNNNNN.html``: the image, the detector's heat map with its colour
scale, the evidence table, the detector's details, the error). Counts, per-folder
verdicts, charts (one histogram panel per verdict, so no class hides another) and the
error list follow. Pages are rendered from Jinja templates (``report/templates``); images
are files beside them (``OUT/report/thumbs``, ``heat``), so the page stays light for big
folders. Pictures are made in one parallel pass (threads; JPEGs decoded at reduced scale);
heat maps are drawn from the tile scores the scan recorded (``detector.tile_map``), so they
cost no detector pass; only records without them (a single tile, or older records) fall
back to the detector, for the ``heatmaps`` highest-scoring files.
"""

from __future__ import annotations

import json
import os
import threading
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from genvis_trust.atomic import atomic_write_bytes
from genvis_trust.evidence import Evidence

from .html import draw_boxes, heat_map, local_boxes, render, thumbnail

REPORT_DIR = "report"
MAX_ROWS = 50_000  # beyond this the index lists the first ones and says so; results.jsonl has all
VERDICT_ORDER = {"generated": 4, "likely_generated": 3, "uncertain": 2, "no_evidence": 1, "error": 0, "skipped": -1}
# the list's default order: what needs a person's eyes first
LIST_ORDER = {"generated": 1, "likely_generated": 2, "error": 3, "uncertain": 4, "no_evidence": 5, "skipped": 6}
VERDICT_COLOURS = {"generated": "#c0392b", "likely_generated": "#e67e22", "uncertain": "#d4ac0d",
                   "no_evidence": "#27ae60", "error": "#7f8c8d", "skipped": "#bdc3c7"}


def list_rank(rec: dict) -> int:
    """Position class in the default order: tampered (0) first, then :data:`LIST_ORDER`."""
    if "tampered" in (rec.get("flags") or []):
        return 0
    return LIST_ORDER.get(rec.get("verdict"), 7)


def folder_of(name: str) -> str:
    """The top-level folder a record belongs to (``.`` for files at the top)."""
    return name.split("/", 1)[0] if "/" in name else "."


def strongest(rec: dict) -> str:
    """The summary of the strongest evidence that indicates something; for a record where
    nothing was found, one line saying what was checked and what the detector's silence is
    worth."""
    if rec.get("skipped"):
        return rec["skipped"].get("message") or "skipped"
    if rec.get("error"):
        return f"{rec['error'].get('code')}: {rec['error'].get('message')}"
    evidence = list(map(Evidence.from_dict, rec.get("evidence") or []))
    found = [e for e in evidence if e.found]
    if found:
        return min(found, key=lambda e: e.strength_rank).summary
    return checked_line(rec, evidence)


def checked_line(rec: dict, evidence: list[Evidence]) -> str:
    """``checked C2PA, metadata, watermark, store, detector: nothing found; p=0.12 below 0.5
    (it caught 3.5% of unseen generators' images)``: what a no-evidence row rests on."""
    names = {"c2pa": "C2PA", "known_generator": "known marks", "region": "regions", "face": "faces"}
    kinds = list(dict.fromkeys(names.get(e.kind, e.kind) for e in evidence))
    line = f"checked {', '.join(kinds) or 'nothing'}: nothing found"
    det = rec.get("detector") or {}
    if det.get("probability") is None:
        return line + "; no detector score"
    line += f"; p={det['probability']:.2f}"
    if det.get("out_of_domain"):
        return line + " (outside the detector's domain: not meaningful)"
    ev = next((e for e in evidence if e.kind == "detector"), None)
    sens = ((ev.details if ev else {}) or {}).get("sensitivity") or {}
    tpr = (sens.get("orig") or {}).get("tpr_pooled")
    if tpr is not None:
        return line + f" below 0.5 (the detector caught {tpr:.1%} of unseen generators' images)"
    return line + " below 0.5 (its sensitivity on unseen generators is not measured)"


def _caveats(rows: list[dict], min_repeats: int = 2, min_len: int = 40) -> list[str]:
    """Split each row's strongest evidence at '; ': a long part repeated in several rows
    becomes a caveat, stated once and referenced per row (``row["notes"]``)."""
    from collections import Counter

    # a no-evidence row's own line ("checked ...; p=...") stays whole: it is the short answer
    parts = {id(r): [r["strongest"]] if r["strongest"].startswith("checked ") else r["strongest"].split("; ")
             for r in rows}
    counts = Counter(p for ps in parts.values() for p in ps[1:] if len(p) >= min_len)
    caveats = [p for p, n in counts.most_common() if n >= min_repeats]
    index = {p: i + 1 for i, p in enumerate(caveats)}
    for r in rows:
        ps = parts[id(r)]
        keep = [ps[0]] + [p for p in ps[1:] if p not in index]
        r["notes"] = [index[p] for p in ps[1:] if p in index]
        r["strongest"] = "; ".join(keep)
    return caveats


def _rows(results: Path) -> list[dict]:
    rows, seen = [], set()
    with open(results, encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            r = json.loads(line)
            if r["input"] in seen:
                continue
            seen.add(r["input"])
            rows.append(r)
    return rows


def render_audit_report(
    out: Path,
    summary: dict[str, Any],
    *,
    root: Path | None = None,
    detector=None,
    heatmaps: int = 200,
    on_progress: Callable[[int, int], None] | None = None,
) -> str:
    """Write the per-file pages, thumbnails and heat maps under ``out/report``; return the
    index page (the caller writes it to ``out/report.html``)."""
    from . import plots

    records = _rows(out / "results.jsonl")
    truncated = len(records) > MAX_ROWS
    records = records[:MAX_ROWS]
    pages = out / REPORT_DIR
    for sub in ("files", "thumbs", "heat"):
        (pages / sub).mkdir(parents=True, exist_ok=True)
    scored = [r for r in records if r.get("detector") and not r.get("error")]
    # a detector reading whole images (a published family, a fusion) has no tiles to map
    tiled = detector is not None and not getattr(detector, "whole_image", False)
    with_heat = {r["input"] for r in sorted(scored, key=lambda r: -r["detector"]["probability"])[:heatmaps]} if tiled else set()
    det_tag = (getattr(detector, "sha256", None) or "x")[:8] if detector is not None else ""

    if on_progress is not None:
        on_progress(0, len(records) + 1)
    records.sort(key=lambda r: (list_rank(r), -(r["detector"]["probability"] if r.get("detector") else -1), r["input"]))
    rows = []
    for k, r in enumerate(records):
        signals = sorted({e.kind for e in map(Evidence.from_dict, r.get("evidence") or []) if e.found})
        p = r["detector"]["probability"] if r.get("detector") else None
        rows.append({**r, "k": k, "folder": folder_of(r["input"]), "signals": signals or ["none"], "p": p,
                     "rank": VERDICT_ORDER.get(r["verdict"], -1), "order": list_rank(r), "strongest": strongest(r),
                     "flags": r.get("flags") or [], "page": f"{REPORT_DIR}/files/{k:06d}.html", "thumb": None})
    caveats = _caveats(rows)

    def one(k: int) -> None:
        row = rows[k]
        pics = _pictures(row, root, pages, detector, det_tag, row["input"] in with_heat, heatmaps)
        if pics.get("thumb"):
            row["thumb"] = f"{REPORT_DIR}/thumbs/{pics['thumb']}"
        _write_file_page(pages / "files" / f"{k:06d}.html", row, pics, rows, k)

    # one parallel pass: decoding, resizing and encoding release the GIL (Pillow, OpenCV)
    from concurrent.futures import ThreadPoolExecutor

    done = 0
    with ThreadPoolExecutor(max_workers=max(1, min(8, os.cpu_count() or 1))) as pool:
        for _ in pool.map(one, range(len(rows))):
            done += 1
            if on_progress is not None:
                on_progress(done, len(rows) + 1)  # the last step: charts and the index page

    charts = []
    if summary["verdicts"]:
        charts.append(("verdicts", plots.bar_counts(out / "verdicts.png", summary["verdicts"], "images per verdict")))
    if summary["signals"]:
        charts.append(("signals", plots.bar_counts(out / "signals.png", summary["signals"], "images per signal")))
    if summary["detector_scores"]:
        groups = dict(sorted(summary["detector_scores"].items(), key=lambda kv: -VERDICT_ORDER.get(kv[0], -1)))
        charts.append(("scores", plots.histogram(out / "scores.png", groups, "detector p(generated), one panel per verdict",
                                                 "p(generated)", colours=VERDICT_COLOURS)))
    verdicts = sorted(summary["verdicts"].items(), key=lambda kv: LIST_ORDER.get(kv[0], 7))
    index = render(
        "audit.html.j2", title="genvis-trust audit", s=summary, rows=rows, truncated=truncated,
        verdict_counts=verdicts, verdict_names=[v for v, _ in verdicts],
        signal_counts=Counter(s for r in rows for s in r["signals"]).most_common(), caveats=caveats,
        flag_counts=Counter(f for r in rows for f in r["flags"]).most_common(),
        folder_counts=sorted(Counter(r["folder"] for r in rows).items()),
        charts=[(n, Path(p).name) for n, p in charts],
    )
    if on_progress is not None:
        on_progress(len(rows) + 1, len(rows) + 1)
    return index


def _write(path: Path, data: bytes | str) -> None:
    """Replace ``path`` whole (a reader never sees half a page) without syncing: the report
    is derived from results.jsonl and rewritten by the next run, so an fsync per thumbnail
    (thousands of them) buys nothing."""
    atomic_write_bytes(path, data.encode("utf-8") if isinstance(data, str) else data, sync=False)


def _decode_small(path: Path, side: int) -> tuple[np.ndarray, tuple[int, int]]:
    """The image at about ``side`` px (JPEGs decoded at a reduced DCT scale, which is what
    makes thumbnails of camera photos cheap), oriented as the scan saw it, and the full
    image's (height, width)."""
    from PIL import Image, ImageOps

    from genvis_trust.io import DEFAULT_MAX_PIXELS

    with Image.open(path) as im:
        if im.width * im.height > DEFAULT_MAX_PIXELS:
            raise ValueError(f"{im.width}x{im.height} is above the toolkit's pixel limit")
        full = (im.height, im.width)
        try:
            if im.getexif().get(0x0112, 1) in (5, 6, 7, 8):  # turned a quarter by its orientation
                full = (im.width, im.height)
        except Exception:  # a malformed EXIF block: the scan did not turn it either
            pass
        im.draft("RGB", (side, side))
        try:
            turned = ImageOps.exif_transpose(im)
        except Exception:  # a malformed EXIF block: shown as stored
            turned = im
        arr = np.asarray(turned.convert("RGB"))
    return arr, full


def _pictures(row: dict, root: Path | None, pages: Path, detector, det_tag: str, want_heat: bool, heatmaps: int) -> dict:
    """Thumbnail, page image and heat map of one file, as files named by the image's sha256
    (so a rerun after a resume reuses them); an empty dict for records without an image.
    The heat map comes from the tile scores in the record when it has them (no detector
    pass); else from the detector, for the ``heatmaps`` highest-scoring files only."""
    from genvis_trust.io import ImageLoadError, encode_image, load_image, sha256_file

    from .html import HEAT_CMAP  # noqa: F401  (the colour scale the bars show)

    if row.get("error") or row.get("skipped") or root is None:
        return {}
    if row.get("video"):
        return _video_pictures(row, pages)
    if Path(row["input"]).is_absolute() or ".." in Path(row["input"]).parts:
        return {"note": "not below the audited folder: not read again for the report"}
    sha = (row.get("image") or {}).get("sha256")
    if not sha:  # scans without provenance checks do not hash the file
        try:
            sha = sha256_file(root / row["input"])
        except OSError as e:
            return {"note": f"the image could not be read again for the report: {e}"}
    det = row.get("detector") or {}
    tiles = det.get("tile_map")
    from_record = bool(tiles)
    want_heat = from_record or (want_heat and detector is not None)
    key = sha[:24]
    names = {"thumb": f"{key}.jpg", "image": f"{key}-page.jpg",
             "heat": f"{key}-tiles.jpg" if from_record else f"{key}-{det_tag}.png"}
    need = [pages / "thumbs" / names["thumb"], pages / "thumbs" / names["image"]]
    if want_heat:
        need.append(pages / "heat" / names["heat"])
    pics: dict[str, Any] = {"note": None}
    meta_path = pages / "heat" / f"{names['heat']}.json"
    if want_heat:  # its scale beside it: two rows of the same bytes may be drawn at once
        need.append(meta_path)
    if not all(p.is_file() for p in need):
        boxes = local_boxes(det)
        try:
            if from_record or not want_heat:
                small, shape = _decode_small(root / row["input"], 384)
                img = None
            else:
                img = load_image(root / row["input"]).array
                small, shape = thumbnail(img, 384), img.shape[:2]
        except (ImageLoadError, OSError, ValueError) as e:
            return {"note": f"the image could not be read again for the report: {e}"}
        page_img = thumbnail(small, 384)
        _write(need[0], encode_image(thumbnail(page_img, 96), "JPEG", quality=85))
        # faces and a region that stands out, boxed (the file names follow the bytes; one audit, one detector)
        _write(need[1], encode_image(draw_boxes(page_img, boxes, shape), "JPEG", quality=90))
        if want_heat:
            if from_record:
                heat = tile_heat(page_img, shape, tiles)
            else:
                with _DETECTOR_LOCK:  # one model, hooks and backward passes: never two threads at once
                    heat = heat_map(detector, img)
            heat["picture"] = draw_boxes(heat["picture"], boxes, shape)
            # the scale first: a picture on disk means its scale is there too
            _write(meta_path, json.dumps({k: v for k, v in heat.items() if k != "picture"}).encode())
            _write(need[2], encode_image(heat["picture"], "JPEG" if from_record else "PNG", quality=90))
    pics["thumb"], pics["image"] = names["thumb"], names["image"]
    if want_heat:
        pics["heat"] = names["heat"]
        pics["heat_meta"] = json.loads(meta_path.read_text(encoding="utf-8"))
    elif det:
        pics["note"] = ("No heat map: the detector was not loaded when this report was written." if detector is None else
                        "No heat map: this detector reads whole images, it has no tiles to map." if getattr(detector, "whole_image", False)
                        else f"No heat map: the report draws one for the {heatmaps} highest-scoring files only"
                        " (audit --heatmaps sets how many).")
    return pics


_LUT: np.ndarray | None = None
_DETECTOR_LOCK = threading.Lock()
_LUT_LOCK = threading.Lock()


def _overlay(picture: np.ndarray, heat: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """``heat`` (0..1, NaN: not scored) blended over ``picture`` in the heat maps' colour scale,
    through a 256-entry table (the same colours as :func:`genvis_trust.detectors.explain.overlay`,
    without importing the detectors for it)."""
    global _LUT
    with _LUT_LOCK:
        if _LUT is None:
            from matplotlib import colormaps

            from .html import HEAT_CMAP

            _LUT = (colormaps[HEAT_CMAP](np.linspace(0, 1, 256))[:, :3] * 255).astype(np.float32)
    idx = (np.nan_to_num(heat, nan=0.0).clip(0, 1) * 255).round().astype(np.uint8)
    return (picture.astype(np.float32) * (1 - alpha) + _LUT[idx] * alpha).round().clip(0, 255).astype(np.uint8)


def pictures_from_pixels(pages: Path, rec: dict, img: np.ndarray) -> None:
    """The thumbnail, page image and tile heat map of a record, from pixels the scan already
    decoded (the audit calls this as each image is scanned), under the names :func:`_pictures`
    looks for, so the report reads no image again."""
    from genvis_trust.io import encode_image

    sha = (rec.get("image") or {}).get("sha256")
    if not sha or rec.get("error") or rec.get("video"):
        return
    det = rec.get("detector") or {}
    key = sha[:24]
    for sub in ("thumbs", "heat"):
        (pages / sub).mkdir(parents=True, exist_ok=True)
    thumb, page = pages / "thumbs" / f"{key}.jpg", pages / "thumbs" / f"{key}-page.jpg"
    if thumb.is_file() and page.is_file():
        return
    boxes = local_boxes(det)
    small = thumbnail(img, 384)
    _write(thumb, encode_image(thumbnail(small, 96), "JPEG", quality=85))
    _write(page, encode_image(draw_boxes(small, boxes, img.shape), "JPEG", quality=90))
    if det.get("tile_map"):
        heat = tile_heat(small, img.shape[:2], det["tile_map"])
        heat["picture"] = draw_boxes(heat["picture"], boxes, img.shape)
        _write(pages / "heat" / f"{key}-tiles.jpg.json", json.dumps({k: v for k, v in heat.items() if k != "picture"}).encode())
        _write(pages / "heat" / f"{key}-tiles.jpg", encode_image(heat["picture"], "JPEG", quality=90))


def tile_heat(picture: np.ndarray, shape: tuple[int, int], tiles: dict) -> dict[str, Any]:
    """The scan's own per-tile p(generated) (``detector.tile_map``) over ``picture`` (the image
    at any scale; ``shape`` the full image's): each tile painted where it lies."""
    h, w = shape
    ph, pw = picture.shape[:2]
    heat = np.full((ph, pw), np.nan, np.float32)
    side = tiles.get("tile") or 0
    for i, y in enumerate(tiles["y"]):
        for j, x in enumerate(tiles["x"]):
            v = tiles["p"][i][j]
            if v is None or not side:
                continue
            y0, x0 = int(y * ph / h), int(x * pw / w)
            y1, x1 = int(min(h, y + side) * ph / h), int(min(w, x + side) * pw / w)
            heat[y0:y1, x0:x1] = np.fmax(heat[y0:y1, x0:x1], v)
    return {"picture": _overlay(picture, heat), "caption": "detector heat map (the tiles the scan scored)",
            "scale": "tile p(generated)", "low": "0", "high": "1"}


def _video_pictures(row: dict, pages: Path) -> dict:
    """A video's timeline chart (p per examined frame over time), and a thumbnail of it."""
    import hashlib

    from genvis_trust.io import encode_image

    from .plots import video_timeline

    key = (row.get("image") or {}).get("sha256") or hashlib.sha256(row["input"].encode()).hexdigest()
    names = {"thumb": f"{key[:24]}-timeline.jpg", "timeline": f"{key[:24]}-timeline.png"}
    chart = video_timeline(row["video"], flags=row.get("flags"))
    atomic_write_bytes(pages / "thumbs" / names["timeline"], encode_image(chart, "PNG"))
    atomic_write_bytes(pages / "thumbs" / names["thumb"], encode_image(thumbnail(chart, 96), "JPEG", quality=85))
    return {**names, "note": None}


def _write_file_page(path: Path, row: dict, pics: dict, rows: list[dict], k: int) -> None:
    from .html import COLOUR_STOPS

    img = row.get("image") or {}
    facts = ", ".join(str(img[x]) for x in ("format",) if img.get(x)) + (
        f" {img['width']}x{img['height']}" if img.get("width") else "")
    meta = pics.get("heat_meta") or {}
    evidence = sorted(map(Evidence.from_dict, row.get("evidence") or []), key=lambda e: e.strength_rank)
    html = render(
        "file.html.j2", title=f"{row['input']} — genvis-trust audit", r=row, evidence=evidence,
        index="../../report.html#files", prev=f"{k - 1:06d}.html" if k > 0 else None,
        next=f"{k + 1:06d}.html" if k + 1 < len(rows) else None,
        image=f"../thumbs/{pics['image']}" if pics.get("image") else None, facts=facts.strip(),
        heat=f"../heat/{pics['heat']}" if pics.get("heat") else None, heat_caption=meta.get("caption"),
        heat_scale=meta.get("scale"), heat_low=meta.get("low"), heat_high=meta.get("high"),
        heat_note=pics.get("note"), stops=COLOUR_STOPS,
        timeline=f"../thumbs/{pics['timeline']}" if pics.get("timeline") else None,
    )
    _write(path, html)


def audit_report_html(summary: dict[str, Any], out: Path, **kwargs: Any) -> str:
    """The audit index page (:func:`render_audit_report` with the summary first)."""
    return render_audit_report(out, summary, **kwargs)
