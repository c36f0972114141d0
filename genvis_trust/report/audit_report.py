"""The audit report: a place to work through a folder's verdicts.

``OUT/report.html`` lists every file (thumbnail, verdict, strongest evidence, p), sortable
and filterable by verdict, signal, folder and name; each row links to a page of its own
(``OUT/report/files/NNNNNN.html``: the image, the detector's heat map with its colour
scale, the evidence table, the detector's details, the error). Counts, per-folder
verdicts, charts (one histogram panel per verdict, so no class hides another) and the
error list follow. Pages are rendered from Jinja templates (``report/templates``); images
are files beside them (``OUT/report/thumbs``, ``heat``), so the page stays light for big
folders. Heat maps cost a detector pass each: only the ``heatmaps`` highest-scoring files
get one.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from genvis_trust.atomic import atomic_write_bytes, atomic_write_text
from genvis_trust.evidence import Evidence

from .html import draw_boxes, heat_map, local_boxes, render, thumbnail

REPORT_DIR = "report"
MAX_ROWS = 50_000  # beyond this the index lists the first ones and says so; results.jsonl has all
VERDICT_ORDER = {"generated": 4, "likely_generated": 3, "uncertain": 2, "no_evidence": 1, "error": 0}
VERDICT_COLOURS = {"generated": "#c0392b", "likely_generated": "#e67e22", "uncertain": "#d4ac0d",
                   "no_evidence": "#27ae60", "error": "#7f8c8d"}


def folder_of(name: str) -> str:
    """The top-level folder a record belongs to (``.`` for files at the top)."""
    return name.split("/", 1)[0] if "/" in name else "."


def strongest(rec: dict) -> str:
    """The summary of the strongest evidence that indicates something, else ``-``."""
    if rec.get("error"):
        return f"{rec['error'].get('code')}: {rec['error'].get('message')}"
    found = [e for e in map(Evidence.from_dict, rec.get("evidence") or []) if e.found]
    if not found:
        return "-"
    return min(found, key=lambda e: e.strength_rank).summary


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
    rows = []
    for k, r in enumerate(records):
        signals = sorted({e.kind for e in map(Evidence.from_dict, r.get("evidence") or []) if e.found})
        p = r["detector"]["probability"] if r.get("detector") else None
        rows.append({**r, "k": k, "folder": folder_of(r["input"]), "signals": signals or ["none"], "p": p,
                     "rank": VERDICT_ORDER.get(r["verdict"], -1), "strongest": strongest(r),
                     "page": f"{REPORT_DIR}/files/{k:06d}.html", "thumb": None})
    for k, row in enumerate(rows):
        pics = _pictures(row, root, pages, detector, det_tag, row["input"] in with_heat, heatmaps)
        if pics.get("thumb"):
            row["thumb"] = f"{REPORT_DIR}/thumbs/{pics['thumb']}"
        _write_file_page(pages / "files" / f"{k:06d}.html", row, pics, rows, k)
        if on_progress is not None:
            on_progress(k + 1, len(rows) + 1)  # the last step: charts and the index page

    charts = []
    if summary["verdicts"]:
        charts.append(("verdicts", plots.bar_counts(out / "verdicts.png", summary["verdicts"], "images per verdict")))
    if summary["signals"]:
        charts.append(("signals", plots.bar_counts(out / "signals.png", summary["signals"], "images per signal")))
    if summary["detector_scores"]:
        groups = dict(sorted(summary["detector_scores"].items(), key=lambda kv: -VERDICT_ORDER.get(kv[0], -1)))
        charts.append(("scores", plots.histogram(out / "scores.png", groups, "detector p(generated), one panel per verdict",
                                                 "p(generated)", colours=VERDICT_COLOURS)))
    verdicts = sorted(summary["verdicts"].items(), key=lambda kv: -VERDICT_ORDER.get(kv[0], -1))
    index = render(
        "audit.html.j2", title="genvis-trust audit", s=summary, rows=rows, truncated=truncated,
        verdict_counts=verdicts, verdict_names=[v for v, _ in verdicts],
        signal_counts=Counter(s for r in rows for s in r["signals"]).most_common(),
        folder_counts=sorted(Counter(r["folder"] for r in rows).items()),
        charts=[(n, Path(p).name) for n, p in charts],
    )
    if on_progress is not None:
        on_progress(len(rows) + 1, len(rows) + 1)
    return index


def _pictures(row: dict, root: Path | None, pages: Path, detector, det_tag: str, want_heat: bool, heatmaps: int) -> dict:
    """Thumbnail, page image and heat map of one file, as files named by the image's sha256
    (so a rerun after a resume reuses them); an empty dict for records without an image."""
    from genvis_trust.io import ImageLoadError, encode_image, load_image, sha256_file

    if row.get("error") or root is None:
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
    key = sha[:24]
    names = {"thumb": f"{key}.jpg", "image": f"{key}.png", "heat": f"{key}-{det_tag}.png"}
    need = [pages / "thumbs" / names["thumb"], pages / "thumbs" / names["image"]]
    if want_heat:
        need.append(pages / "heat" / names["heat"])
    pics: dict[str, Any] = {"note": None}
    if not all(p.is_file() for p in need):
        try:
            img = load_image(root / row["input"]).array
        except (ImageLoadError, OSError, ValueError) as e:
            return {"note": f"the image could not be read again for the report: {e}"}
        small = thumbnail(img, 96)
        atomic_write_bytes(need[0], encode_image(small, "JPEG", quality=85))
        # faces and a region that stands out, boxed (the file names follow the bytes; one audit, one detector)
        atomic_write_bytes(need[1], encode_image(draw_boxes(thumbnail(img, 384), local_boxes(row.get("detector")), img.shape), "PNG"))
        if want_heat:
            heat = heat_map(detector, img)
            heat["picture"] = draw_boxes(heat["picture"], local_boxes(row.get("detector")), img.shape)
            atomic_write_bytes(need[2], encode_image(heat["picture"], "PNG"))
            atomic_write_bytes(pages / "heat" / f"{names['heat']}.json",
                               json.dumps({k: v for k, v in heat.items() if k != "picture"}).encode())
    pics["thumb"], pics["image"] = names["thumb"], names["image"]
    if want_heat:
        pics["heat"] = names["heat"]
        pics["heat_meta"] = json.loads((pages / "heat" / f"{names['heat']}.json").read_text(encoding="utf-8"))
    elif row.get("detector"):
        pics["note"] = ("No heat map: the detector was not loaded when this report was written." if detector is None else
                        "No heat map: this detector reads whole images, it has no tiles to map." if getattr(detector, "whole_image", False)
                        else f"No heat map: the report draws one for the {heatmaps} highest-scoring files only"
                        " (audit --heatmaps sets how many).")
    return pics


def _video_pictures(row: dict, pages: Path) -> dict:
    """A video's timeline chart (p per examined frame over time), and a thumbnail of it."""
    import hashlib

    from genvis_trust.io import encode_image

    from .plots import video_timeline

    key = (row.get("image") or {}).get("sha256") or hashlib.sha256(row["input"].encode()).hexdigest()
    names = {"thumb": f"{key[:24]}-timeline.jpg", "timeline": f"{key[:24]}-timeline.png"}
    chart = video_timeline(row["video"])
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
    atomic_write_text(path, html)


def audit_report_html(summary: dict[str, Any], out: Path, **kwargs: Any) -> str:
    """The audit index page (:func:`render_audit_report` with the summary first)."""
    return render_audit_report(out, summary, **kwargs)
