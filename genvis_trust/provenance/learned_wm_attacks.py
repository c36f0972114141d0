"""The learned watermark's attack stand-ins (:mod:`.learned_wm`): differentiable JPEG and the
real codec through a straight-through step, resize, crop, rotation, brightness/contrast/
saturation, blur and noise, applied as one chain per batch by :func:`apply_attacks`. Training
(:mod:`.learned_wm_train`) and the embedder's per-image refinement (:mod:`.learned_wm`) both use
them, so they live below both. torch is passed in or imported inside the functions.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

_JPEG_Y = np.array([
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56,
    14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99], np.float32).reshape(8, 8)
_JPEG_C = np.full((8, 8), 99, np.float32)
_JPEG_C[:4, :4] = np.array([17, 18, 24, 47, 18, 21, 26, 66, 24, 26, 56, 99, 47, 66, 99, 99], np.float32).reshape(4, 4)


def _quality_scale(q: float) -> float:
    """The IJG scaling of the standard tables for quality ``q`` (1..100)."""
    q = min(max(q, 1.0), 100.0)
    return (5000.0 / q if q < 50 else 200.0 - 2 * q) / 100.0


def _dct_matrix(torch):
    k = np.arange(8)
    m = np.cos((2 * k[None, :] + 1) * k[:, None] * np.pi / 16) * np.sqrt(2 / 8)
    m[0] /= np.sqrt(2)
    return torch.tensor(m, dtype=torch.float32)


def diff_jpeg(x, quality: float):
    """A differentiable JPEG approximation of ``x`` (B, 3, H, W) in 0..1: YCbCr, 4:2:0
    chroma, 8x8 DCT quantised with the IJG tables at ``quality``, rounding replaced by
    ``round(v) + (v - round(v))**3`` so gradients pass."""
    import torch
    from torch.nn import functional as F

    b, _, h, w = x.shape
    ph, pw = (-h) % 16, (-w) % 16
    xp = F.pad(x, (0, pw, 0, ph), mode="replicate") * 255.0
    r, g, bl = xp[:, 0], xp[:, 1], xp[:, 2]
    y = 0.299 * r + 0.587 * g + 0.114 * bl
    cb = -0.168736 * r - 0.331264 * g + 0.5 * bl
    cr = 0.5 * r - 0.418688 * g - 0.081312 * bl
    d = _dct_matrix(torch).to(x.device)
    s = _quality_scale(quality)

    def code(plane, table):
        n, hh, ww = plane.shape
        blocks = (plane - 128.0 * (table is _JPEG_Y)).view(n, hh // 8, 8, ww // 8, 8).permute(0, 1, 3, 2, 4)
        coef = d @ blocks @ d.T
        qt = torch.tensor(np.clip(np.floor(table * s + 0.5), 1, 255), device=x.device)
        v = coef / qt
        rv = torch.round(v)
        v = (rv + (v - rv) ** 3) * qt
        out = (d.T @ v @ d).permute(0, 1, 3, 2, 4).reshape(n, hh, ww)
        return out + 128.0 * (table is _JPEG_Y)

    y = code(y, _JPEG_Y)
    chroma = []
    for c in (cb, cr):
        small = F.avg_pool2d(c[:, None], 2)[:, 0]
        sh, sw = small.shape[-2:]
        small = F.pad(small[:, None], (0, (-sw) % 8, 0, (-sh) % 8), mode="replicate")[:, 0]
        small = code(small, _JPEG_C)[:, :sh, :sw]
        chroma.append(F.interpolate(small[:, None], scale_factor=2, mode="bilinear", align_corners=False)[:, 0])
    cb, cr = chroma
    r = y + 1.402 * cr
    g = y - 0.344136 * cb - 0.714136 * cr
    bl = y + 1.772 * cb
    out = torch.stack([r, g, bl], 1)[:, :, :h, :w] / 255.0
    return out.clamp(0, 1)


def real_jpeg_st(x, quality: int):
    """The real codec (OpenCV, 4:2:0) on ``x``, gradients passed straight through."""
    import cv2
    import torch

    arr = (x.detach().clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    outs = []
    for im in arr:
        ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(im[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
        outs.append(cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1])
    y = torch.from_numpy(np.stack(outs).astype(np.float32) / 255.0).permute(0, 3, 1, 2).to(x.device)
    return x + (y - x).detach()


def _gauss_blur(x, sigma: float):
    import torch
    from torch.nn import functional as F

    if sigma < 0.2:
        return x
    rad = max(1, int(math.ceil(3 * sigma)))
    t = torch.arange(-rad, rad + 1, dtype=torch.float32, device=x.device)
    k = torch.exp(-t * t / (2 * sigma * sigma))
    k = k / k.sum()
    c = x.shape[1]
    x = F.conv2d(F.pad(x, (rad, rad, 0, 0), mode="reflect"), k.view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)
    return F.conv2d(F.pad(x, (0, 0, rad, rad), mode="reflect"), k.view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)


def _rotate(x, degrees: float):
    import torch
    from torch.nn import functional as F

    a = math.radians(degrees)
    theta = torch.tensor([[math.cos(a), -math.sin(a), 0.0], [math.sin(a), math.cos(a), 0.0]], device=x.device)
    grid = F.affine_grid(theta.expand(x.shape[0], 2, 3), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def _resize(x, factor: float):
    from torch.nn import functional as F

    h, w = x.shape[-2:]
    size = (max(8, round(h * factor)), max(8, round(w * factor)))
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=factor < 1)


def _crop(x, area: float, rng: np.random.Generator):
    h, w = x.shape[-2:]
    aspect = math.exp(rng.uniform(-0.3, 0.3))
    ch = min(h, max(8, round(h * math.sqrt(area) * aspect)))
    cw = min(w, max(8, round(w * area * h / ch)))
    top, left = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
    return x[..., top : top + ch, left : left + cw]


def _colour(x, s: float, rng: np.random.Generator):
    bright = rng.uniform(-0.15, 0.15) * s
    contrast = 1 + rng.uniform(-0.3, 0.3) * s
    sat = 1 + rng.uniform(-0.6, 0.6) * s
    gray = (0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3])
    x = gray + (x - gray) * sat
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return ((x - mean) * contrast + mean + bright).clamp(0, 1)


#: the stand-ins by group; each takes (x, strength in 0..1, rng) and returns the attacked batch
ATTACKS: dict[str, dict[str, Callable]] = {
    "geometric": {
        "none": lambda x, s, rng: x,
        "resize": lambda x, s, rng: _resize(x, rng.uniform(1 - 0.67 * s, 1.0)),
        "crop": lambda x, s, rng: _crop(x, rng.uniform(1 - 0.55 * s, 1.0), rng),
        "rotate": lambda x, s, rng: _rotate(x, rng.uniform(-3, 3) * s),
    },
    "photometric": {
        "none": lambda x, s, rng: x,
        "colour": _colour,
        "blur": lambda x, s, rng: _gauss_blur(x, rng.uniform(0, 1.5) * s),
        "noise": lambda x, s, rng: (x + __import__("torch").randn_like(x) * rng.uniform(0, 0.04) * s).clamp(0, 1),
    },
    "codec": {
        "none": lambda x, s, rng: x,
        "jpeg_diff": lambda x, s, rng: diff_jpeg(x, rng.uniform(95 - 65 * s, 95)),
        "jpeg_real": lambda x, s, rng: real_jpeg_st(x, int(rng.uniform(95 - 65 * s, 95))),
    },
}
_WEIGHTS = {"geometric": (0.25, 0.3, 0.3, 0.15), "photometric": (0.25, 0.35, 0.2, 0.2), "codec": (0.2, 0.4, 0.4)}


def apply_attacks(x, strength: float, rng: np.random.Generator) -> tuple[object, list[str]]:
    """One geometric, one photometric and one codec stand-in (each possibly ``none``)."""
    names = []
    for group, table in ATTACKS.items():
        name = str(rng.choice(list(table), p=_WEIGHTS[group]))
        names.append(name)
        x = table[name](x, strength, rng)
    return x, names


# --------------------------------------------------------------------------- data

__all__ = ["ATTACKS", "apply_attacks", "diff_jpeg", "real_jpeg_st"]
