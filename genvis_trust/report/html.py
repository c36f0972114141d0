"""Self-contained HTML reports (images and charts embedded as data URIs; no network).

- :func:`scan_report_html`: one card per image: the image, its verdict, every piece of
  evidence with its strength, the detector's patch-score heat map and the spectrum;
- :func:`audit_report_html`: counts per verdict, signal and folder, score histograms,
  and the list of errors.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from genvis_trust.io import encode_image

_CSS = """
body{font-family:system-ui,sans-serif;margin:24px;color:#222;max-width:1100px}
h1{font-size:22px} h2{font-size:17px;margin-top:28px}
.card{border:1px solid #ddd;border-radius:8px;padding:12px;margin:12px 0;display:flex;gap:16px}
.imgs{display:flex;gap:8px;flex-shrink:0} .imgs figure{margin:0;text-align:center;font-size:11px;color:#666}
.imgs img{width:180px;height:180px;object-fit:contain;image-rendering:pixelated;background:#f4f4f4}
table{border-collapse:collapse;font-size:13px} td,th{border-bottom:1px solid #eee;padding:4px 8px;text-align:left}
.v{font-weight:600;padding:2px 8px;border-radius:10px;font-size:13px}
.generated{background:#f8d7da}.likely_generated{background:#fde2c4}.uncertain{background:#fff3cd}
.no_evidence{background:#d4edda}.error{background:#e2e3e5}
.small{color:#666;font-size:12px}
"""

STRENGTH_ORDER = {"cryptographic": 0, "statistical": 1, "declared": 2, "learned": 3}


def data_uri_png(arr: np.ndarray) -> str:
    return "data:image/png;base64," + base64.b64encode(encode_image(arr, "PNG")).decode()


def thumbnail(arr: np.ndarray, side: int = 256) -> np.ndarray:
    h, w = arr.shape[:2]
    f = side / max(h, w)
    if f >= 1:
        return arr
    return cv2.resize(arr, (max(1, round(w * f)), max(1, round(h * f))), interpolation=cv2.INTER_AREA)


def spectrum_image(arr: np.ndarray, side: int = 256) -> np.ndarray:
    """Centred log-magnitude spectrum of the luminance, as an RGB picture (peaks = periodic traces)."""
    from matplotlib import colormaps

    g = cv2.cvtColor(thumbnail(arr, 512), cv2.COLOR_RGB2GRAY).astype(np.float32)
    f = np.log1p(np.abs(np.fft.fftshift(np.fft.fft2(g - g.mean()))))
    f = (f - f.min()) / max(float(np.ptp(f)), 1e-9)
    rgb = (colormaps["viridis"](f)[..., :3] * 255).astype(np.uint8)
    return thumbnail(rgb, side)


def _page(title: str, body: str) -> str:
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{_CSS}</style></head><body><h1>{html.escape(title)}</h1>{body}</body></html>\n"
    )


def _evidence_table(evidence: list[dict]) -> str:
    if not evidence:
        return ""
    rows = []
    for e in sorted(evidence, key=lambda e: STRENGTH_ORDER.get(e.get("strength"), 9)):
        mark = "●" if e.get("indicates") not in (None, "none") else "○"
        rows.append(
            f"<tr><td>{mark} {html.escape(e['kind'])}</td><td>{html.escape(e['strength'])}</td>"
            f"<td>{html.escape(e['summary'])}</td></tr>"
        )
    return "<table><tr><th>signal</th><th>strength</th><th>finding</th></tr>" + "".join(rows) + "</table>"


def scan_report_html(items: list[tuple[dict[str, Any], dict[str, np.ndarray]]], title: str = "genvis-trust scan") -> str:
    """``items``: (scan result dict, pictures) where pictures maps a caption to an RGB array."""
    cards = []
    for res, pics in items:
        figs = "".join(
            f"<figure><img src='{data_uri_png(a)}'><figcaption>{html.escape(c)}</figcaption></figure>" for c, a in pics.items()
        )
        img = res.get("image") or {}
        facts = ", ".join(f"{k} {img[k]}" for k in ("format", "width", "height") if img.get(k) is not None)
        cards.append(
            f"<div class='card'><div class='imgs'>{figs}</div><div>"
            f"<div><b>{html.escape(res['input'])}</b> <span class='small'>{html.escape(facts)}</span></div>"
            f"<p><span class='v {res['verdict']}'>{html.escape(res['summary'])}</span></p>"
            f"{_evidence_table(res.get('evidence', []))}</div></div>"
        )
    note = (
        "<p class='small'>Verdicts never claim an image is real: <i>no evidence</i> means no signal was found. "
        "Strengths: cryptographic (signed C2PA) &gt; statistical (watermarks, record match) &gt; declared "
        "(unsigned metadata) &gt; learned (detector probability).</p>"
    )
    return _page(title, note + "".join(cards))


def audit_report_html(summary: dict[str, Any], out: Path) -> str:
    from . import plots

    charts = []
    if summary["verdicts"]:
        charts.append(("verdicts", plots.bar_counts(out / "verdicts.png", summary["verdicts"], "images per verdict")))
    if summary["signals"]:
        charts.append(("signals", plots.bar_counts(out / "signals.png", summary["signals"], "images per signal")))
    if summary["detector_scores"]:
        charts.append(
            ("scores", plots.histogram(out / "scores.png", summary["detector_scores"], "detector p(generated) by verdict", "p(generated)"))
        )
    imgs = "".join(
        f"<img alt='{n}' style='max-width:520px;margin:6px' src='data:image/png;base64,"
        f"{base64.b64encode(Path(p).read_bytes()).decode()}'>"
        for n, p in charts
    )

    def table(d: dict, head: tuple[str, str]) -> str:
        rows = "".join(f"<tr><td>{html.escape(str(k))}</td><td>{v}</td></tr>" for k, v in d.items())
        return f"<table><tr><th>{head[0]}</th><th>{head[1]}</th></tr>{rows}</table>"

    verdict_names = sorted({v for f in summary["folders"].values() for v in f})
    frows = "".join(
        "<tr><td>" + html.escape(k) + "</td>" + "".join(f"<td>{v.get(x, 0)}</td>" for x in verdict_names) + "</tr>"
        for k, v in summary["folders"].items()
    )
    folders = "<table><tr><th>folder</th>" + "".join(f"<th>{x}</th>" for x in verdict_names) + "</tr>" + frows + "</table>"
    errs = "".join(
        f"<tr><td>{html.escape(e['input'])}</td><td>{html.escape(str(e['code']))}</td><td>{html.escape(str(e['message']))}</td></tr>"
        for e in summary["errors"][:1000]
    )
    body = (
        f"<p>{summary['records']} files in <code>{html.escape(str(summary['root']))}</code>; "
        f"{summary['new_this_run']} scanned in this run ({summary['elapsed_s']} s). "
        f"Every record is in <code>results.jsonl</code>.</p>"
        f"<h2>Verdicts</h2>{table(summary['verdicts'], ('verdict', 'images'))}"
        f"<h2>Signals</h2>{table(summary['signals'], ('signal', 'images')) if summary['signals'] else '<p>none</p>'}"
        f"<h2>Per folder</h2>{folders}<h2>Charts</h2>{imgs}"
        f"<h2>Errors ({len(summary['errors'])})</h2>"
        + (f"<table><tr><th>file</th><th>code</th><th>problem</th></tr>{errs}</table>" if errs else "<p>none</p>")
    )
    return _page("genvis-trust audit", body)
