"""HTML reports that need no network.

- :func:`scan_report_html`: one self-contained page (images as data URIs), one card per
  image: the image, its verdict, every piece of evidence with its strength, the
  detector's heat map with its colour scale, and the spectrum;
- the audit's report (every file with its verdict, and a page per file, the images as
  files beside the pages: a big folder would not fit in one page) is
  :mod:`genvis_trust.report.audit_report`, which draws with this module's pieces.

Pages are Jinja templates in ``report/templates``, autoescaped.
"""

from __future__ import annotations

import base64
from typing import Any

import cv2
import numpy as np

from genvis_trust.evidence import STRENGTH_ORDER, Evidence  # noqa: F401  (STRENGTH_ORDER: kept importable here)
from genvis_trust.io import encode_image


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


def _colour_stops(n: int = 11) -> list[str]:
    from matplotlib import colormaps

    cmap = colormaps[HEAT_CMAP]
    return ["#" + "".join(f"{int(c * 255):02x}" for c in cmap(i / (n - 1))[:3]) for i in range(n)]


HEAT_CMAP = "inferno"  # the heat maps' colour scale (detectors.explain.overlay), for the colour bars
COLOUR_STOPS = _colour_stops()


def heat_map(detector, img: np.ndarray) -> dict[str, Any]:
    """Where the detector's evidence comes from, drawn over the image, with what its colours
    mean: Grad-CAM inside a single tile (relative: 0 to the map's maximum), else the
    calibrated p(generated) of every tile the verdict averages."""
    from genvis_trust.detectors.explain import gradcam, overlay, patch_score_map
    from genvis_trust.detectors.training import fixed_patches

    if max(img.shape[:2]) <= detector.patch * 1.5:
        picture = overlay(img, gradcam(detector, fixed_patches([img], detector.patch)[0]))
        return {"picture": picture, "caption": "detector Grad-CAM", "scale": "Grad-CAM, relative", "low": "0", "high": "max"}
    picture = overlay(thumbnail(img, 384), patch_score_map(detector, img, max_tiles=1024))
    return {"picture": picture, "caption": "detector heat map (per tile)", "scale": "tile p(generated)", "low": "0", "high": "1"}


def local_boxes(detector: dict[str, Any] | None) -> list[tuple[list[int], str, tuple[int, int, int]]]:
    """``(box, label, colour)`` to draw from a scan record's ``detector``: every face (red when
    it stands out, cyan when scored, grey when too small to score) and the strongest region
    when it stands out (red)."""
    out = []
    det = detector or {}
    for i, f in enumerate(det.get("faces") or []):
        if f["status"] == "too_small":
            out.append((f["box"], f"face {i + 1}: too small", (160, 160, 160)))
        else:
            out.append((f["box"], f"face {i + 1} p={f['probability']:.2f}", (230, 30, 30) if f["fires"] else (0, 200, 230)))
    region = det.get("region")
    if region and region.get("fires"):
        out.append((region["box"], f"region p={region['probability']:.2f}", (230, 30, 30)))
    return out


def draw_boxes(picture: np.ndarray, boxes: list[tuple[list[int], str, tuple[int, int, int]]], shape: tuple[int, ...]) -> np.ndarray:
    """``picture`` (the image at any scale; ``shape`` is the full image's) with the boxes drawn."""
    if not boxes:
        return picture
    pic = np.ascontiguousarray(picture).copy()
    fy, fx = pic.shape[0] / shape[0], pic.shape[1] / shape[1]
    for (x, y, w, h), label, colour in boxes:
        p0 = (int(x * fx), int(y * fy))
        p1 = (int((x + w) * fx) - 1, int((y + h) * fy) - 1)
        cv2.rectangle(pic, p0, p1, colour, 2)
        cv2.putText(pic, label, (p0[0] + 2, max(10, p0[1] - 3)), cv2.FONT_HERSHEY_SIMPLEX, 0.35, colour, 1, cv2.LINE_AA)
    return pic


def with_colour_bar(image: np.ndarray, caption: str, low: str, high: str) -> np.ndarray:
    """``image`` with the heat maps' colour scale drawn under it, labelled (for PNG output,
    where no page can carry the scale)."""
    from matplotlib import colormaps

    w = image.shape[1]
    strip = np.full((34, w, 3), 255, np.uint8)
    x0, x1 = 6, max(7, w - 6)
    strip[4:16, x0:x1] = (colormaps[HEAT_CMAP](np.linspace(0, 1, x1 - x0))[:, :3] * 255).astype(np.uint8)[None]
    font, size, ink = cv2.FONT_HERSHEY_SIMPLEX, 0.38, (40, 40, 40)

    def text(s: str, x: int) -> None:
        cv2.putText(strip, s, (x, 29), font, size, ink, 1, cv2.LINE_AA)

    text(low, x0)
    text(high, x1 - cv2.getTextSize(high, font, size, 1)[0][0])
    text(caption, (w - cv2.getTextSize(caption, font, size, 1)[0][0]) // 2)
    return np.vstack([image, strip])


def _environment():
    from jinja2 import Environment, PackageLoader, select_autoescape

    from genvis_trust.datasets.folders import display_name

    env = Environment(loader=PackageLoader("genvis_trust.report", "templates"),
                      autoescape=select_autoescape(["j2", "html"], default_for_string=True),
                      trim_blocks=True, lstrip_blocks=True)
    env.filters["name"] = lambda v: display_name(str(v))
    return env


_ENV = None


def render(template: str, **context: Any) -> str:
    """A report page from ``report/templates`` (autoescaped). Names that are not UTF-8 come
    out as U+FFFD, so the page can always be written."""
    from genvis_trust.datasets.folders import display_name

    global _ENV
    if _ENV is None:
        _ENV = _environment()
    return display_name(_ENV.get_template(template).render(**context))


def scan_report_html(items: list[tuple[dict[str, Any], dict[str, Any]]], title: str = "genvis-trust scan") -> str:
    """``items``: (scan result dict, pictures) where pictures maps a caption to an RGB array,
    or to a :func:`heat_map` dict (drawn with its colour bar)."""
    shown = []
    for res, pics in items:
        figs = {}
        for caption, p in pics.items():
            if isinstance(p, dict):
                figs[p["caption"]] = {"src": data_uri_png(p["picture"]), "scale": p["scale"], "low": p["low"], "high": p["high"]}
            else:
                figs[caption] = {"src": data_uri_png(p), "scale": None}
        ev = [Evidence.from_dict(e) for e in res.get("evidence") or []]
        shown.append(({**res, "evidence": ev, "image": res.get("image") or {}}, figs))
    return render("scan.html.j2", title=title, items=shown, stops=COLOUR_STOPS)
