"""The two DWT backends of invisible-watermark, and a vectorised reader for both.

Embedding calls the library unchanged (``WatermarkEncoder.encode(bgr, method)``), so
what we write is what every other invisible-watermark user writes and reads.

Reading is reimplemented in numpy, vectorised over blocks *and* images, because the
library walks 4x4 blocks in a Python loop (4,096 blocks for a 512x512 image). The math
is the library's, step for step (``imwatermark/dwtDctSvd.py`` and ``maxDct.py``):

1. BGR -> YUV with OpenCV on ``uint8``; only channel 1 (U) carries bits (the library's
   ``scales=[0, 36, 0]`` / ``[0, 36, 36]`` with ``for channel in range(2)``);
2. one-level Haar DWT of ``U[:H//4*4, :W//4*4]``, keep the LL band (bit-identical to
   PyWavelets: a table of its float operations per pair of uint8 values, see
   :data:`_PAIR_TABLE`);
3. 4x4 blocks in row-major order; block ``i`` carries bit ``i % n_bits``;
4. per block a 0/1 score: ``dwtDctSvd``: largest singular value ``s0`` of the block's DCT,
   score ``(s0 mod 36) > 18``; ``dwtDct``: the largest-magnitude coefficient after the
   first, score ``(|v| mod 36) > 18``;
5. a bit is 1 when the mean score of its blocks times 255 exceeds 127.

``read_bits_reference`` runs the library itself; tests and the benchmark compare the two.

Steps 1-3 are the same for both backends and for every known generator's mark (all
``dwtDct``), and step 4 does not depend on the number of bits, so they are computed once
per channel order and method in a :class:`~.watermarks.SharedTransforms` and shared by
every reader; only step 5 is per reader. Two channel orders exist because some tools hand
the library RGB arrays as if they were BGR (:data:`ORDERS`). Neither needs a reordered
copy of the image: OpenCV's RGB->YUV on the RGB array is, value for value, BGR->YUV on its
channel-reversed copy (checked in the tests).

Known behaviour of the library worth knowing (measured, see ``docs/provenance.md``): the
embedder writes its float result into the ``uint8`` YUV array (truncation, no clipping)
and swaps the H and V detail bands when inverting the DWT, so stamping changes chroma
detail slightly; ``dwtDct`` quantises the largest LL coefficient of each block *without*
a DCT, and the position of that maximum can move after the uint8 round trip, which is why
it reads back less reliably than ``dwtDctSvd``.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import pywt

from .watermarks import (
    BitReading,
    SharedTransforms,
    WatermarkBackend,
    WatermarkError,
    group_by_shape,
    register_watermark,
)

__all__ = ["ORDERS", "VIDEO_SCALE", "block_scores", "ll_blocks", "read_bits_from_scores"]

_SCALE = 36.0
_BLOCK = 4

#: How an RGB image reaches the library: ``"bgr"``, converted to BGR first (what the
#: library expects; our backends, SD v1/v2 scripts, newer diffusers); ``"rgb_as_bgr"``,
#: the RGB array handed over as if it were BGR (older diffusers' SDXL watermarker).
ORDERS = ("bgr", "rgb_as_bgr")
_TO_YUV = {"bgr": cv2.COLOR_RGB2YUV, "rgb_as_bgr": cv2.COLOR_BGR2YUV}

_HAAR = float(pywt.Wavelet("haar").dec_lo[0])


def _haar_ll(x: np.ndarray) -> np.ndarray:
    """LL band of a one-level Haar DWT over the last two axes, bit-identical to
    ``pywt.dwt2(x, "haar", axes=(-2, -1))[0]`` (same operations in the same order: rows of
    axis -2 first)."""
    a = x[..., 0::2, :] * _HAAR + x[..., 1::2, :] * _HAAR
    return a[..., 0::2] * _HAAR + a[..., 1::2] * _HAAR


def _pair_table() -> np.ndarray:
    v = np.arange(256, dtype=np.float64)
    return ((v[:, None] * _HAAR + v[None, :] * _HAAR) * _HAAR).ravel()


# (i * h + j * h) * h for every pair of uint8 values i (even row), j (odd row): the first
# half of an LL coefficient, with the very float operations of _haar_ll, so that
# LL = T[pair left] + T[pair right] is bit-identical to it at a fraction of the cost (a
# 512 KiB table read instead of six passes over a float64 copy of the plane)
_PAIR_TABLE = _pair_table()


def _uint8_ll_blocks(u: np.ndarray, r: int, c: int) -> np.ndarray:
    """(r * c, 4, 4) LL blocks, row-major block order, of a 2-D uint8 plane of at least
    8r x 8c: the blocks of :func:`_haar_ll`, bit for bit, through :data:`_PAIR_TABLE`. The
    table indices are put in block order (uint16, cheap to move) so that the table reads
    land in block order and the float64 result is never transposed."""
    u = u[: 8 * r, : 8 * c]

    def pairs(first_col: int) -> np.ndarray:
        p = u[0::2, first_col::2].astype(np.uint16)
        p <<= 8
        p |= u[1::2, first_col::2]
        return p.reshape(r, _BLOCK, c, _BLOCK).transpose(0, 2, 1, 3).reshape(-1)

    ll = _PAIR_TABLE[pairs(0)]
    ll += _PAIR_TABLE[pairs(1)]  # float addition commutes: same as left + right
    return ll.reshape(r * c, _BLOCK, _BLOCK)


def _compute_ll_blocks(images: Sequence[np.ndarray], order: str) -> np.ndarray:
    h, w = images[0].shape[:2]
    # the library transforms the top-left H//4*4 x W//4*4 pixels and walks whole 4x4
    # blocks of the half-size LL band: 8 x 8 pixels per block
    r, c = (h // 4 * 4) // 8, (w // 4 * 4) // 8
    out = [
        # cvtColor is per pixel, so converting the pixels the blocks cover is the same as
        # converting the whole frame and cropping; only the U plane carries bits
        _uint8_ll_blocks(cv2.cvtColor(im[: 8 * r, : 8 * c], _TO_YUV[order])[..., 1], r, c)
        for im in images
    ]
    return out[0][None] if len(out) == 1 else np.stack(out)


def ll_blocks(shared: SharedTransforms, order: str = "bgr") -> np.ndarray:
    """(N, n_blocks, 4, 4) LL blocks of the U channel, row-major block order, as the
    library's decoder walks them; computed once per ``order`` and kept in ``shared``."""
    if order not in _TO_YUV:
        raise WatermarkError(f"unknown channel order {order!r}; choose from {ORDERS}")
    return shared.memo(("dwt.ll", order), lambda: _compute_ll_blocks(shared.images, order))


def _svd_scores(blocks: np.ndarray, scale: float = _SCALE) -> np.ndarray:
    """0/1 per block: ``(s0 mod scale) > scale / 2`` with ``s0`` the largest singular value
    (``scale`` 36, the library's default, unless a backend embeds at another step).

    The DCT is orthonormal, so the singular values of DCT(block) are the block's own, and
    ``s0**2`` is the largest eigenvalue of the Gram matrix ``G = B^T B``. Only the side of
    the nearest multiple of ``scale / 2`` matters, so ``s0`` need not be computed exactly: the U plane
    is non-negative, hence so are ``B`` and ``G``, and for any positive ``x`` the
    Collatz-Wielandt bounds ``min_i (Gx)_i/x_i <= s0**2 <= max_i (Gx)_i/x_i`` hold. Two power
    steps from ``x = 1`` make the bounds tight enough to decide nearly every block; the
    few blocks whose bracket (widened by 1e-9, far above rounding) straddles a multiple of
    ``scale / 2``, that have a zero row or a negative entry, get the exact batched eigenvalue, as
    before. So the scores are those of ``eigvalsh`` on every block (pinned in the tests),
    at about a tenth of its cost.
    """
    lead = blocks.shape[:-2]
    b = blocks.reshape(-1, _BLOCK, _BLOCK)
    # G's entries as one array per (i, j) over all blocks (3x faster than a batched matmul
    # of 4x4 matrices); it may differ from the matmul's G in the last bit, which the 1e-9
    # widening covers, and undecided blocks use the matmul's G, exactly as before
    col = np.ascontiguousarray(b.reshape(-1, _BLOCK * _BLOCK).T).reshape(_BLOCK, _BLOCK, -1)  # col[k, i] = B[k, i]
    g = [[None] * _BLOCK for _ in range(_BLOCK)]
    for i in range(_BLOCK):
        for j in range(i, _BLOCK):
            g[i][j] = g[j][i] = col[0, i] * col[0, j] + col[1, i] * col[1, j] + col[2, i] * col[2, j] + col[3, i] * col[3, j]

    def matvec(x):
        return [g[i][0] * x[0] + g[i][1] * x[1] + g[i][2] * x[2] + g[i][3] * x[3] for i in range(_BLOCK)]

    x = [np.ones(len(b))] * _BLOCK
    for _ in range(2):
        y = matvec(x)
        top = np.maximum(np.maximum(y[0], y[1]), np.maximum(y[2], y[3]))
        with np.errstate(divide="ignore", invalid="ignore"):
            x = [yi / top for yi in y]
    y = matvec(x)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = [y[i] / x[i] for i in range(_BLOCK)]
    lo = np.minimum(np.minimum(ratios[0], ratios[1]), np.minimum(ratios[2], ratios[3]))
    hi = np.maximum(np.maximum(ratios[0], ratios[1]), np.maximum(ratios[2], ratios[3]))
    with np.errstate(invalid="ignore"):
        s_lo = np.sqrt(np.maximum(lo, 0.0)) * (1 - 1e-9) - 1e-9
        s_hi = np.sqrt(hi) * (1 + 1e-9) + 1e-9
        half = scale * 0.5
        k = np.floor(s_lo / half)
        decided = np.isfinite(s_lo) & np.isfinite(s_hi) & (k == np.floor(s_hi / half))
    # the bounds need B >= 0: true of every U plane, checked so that no other input is misread
    decided &= b.reshape(len(b), -1).min(axis=1) >= 0
    scores = (np.mod(k, 2) == 1).astype(np.uint8)
    rest = np.flatnonzero(~decided)
    if rest.size:
        sub = b[rest]
        s0 = np.sqrt(np.maximum(np.linalg.eigvalsh(np.swapaxes(sub, -1, -2) @ sub)[..., -1], 0.0))
        scores[rest] = np.mod(s0, scale) > half
    return scores.reshape(lead)


def _max_coefficient_scores(blocks: np.ndarray, scale: float = _SCALE) -> np.ndarray:
    """0/1 per block: ``(|v| mod scale) > scale / 2`` for the largest-magnitude coefficient
    after the first (the library's ``infer_dct_matrix``: on the LL block itself, no DCT)."""
    flat = blocks.reshape(*blocks.shape[:-2], _BLOCK * _BLOCK)[..., 1:]
    pos = np.argmax(np.abs(flat), axis=-1)
    val = np.abs(np.take_along_axis(flat, pos[..., None], axis=-1)[..., 0])
    return (np.mod(val, scale) > scale * 0.5).astype(np.uint8)


_SCORERS = {"dwtDctSvd": _svd_scores, "dwtDct": _max_coefficient_scores}


def block_scores(shared: SharedTransforms, method: str, order: str = "bgr", scale: float = _SCALE) -> np.ndarray:
    """(N, n_blocks) 0/1 block scores of ``method`` (``dwtDctSvd`` or ``dwtDct``) at the
    quantisation step ``scale`` in ``order``; they do not depend on the number of bits, so
    every reader of the same method, step and order shares them (the LL blocks are shared
    whatever the step)."""
    if method not in _SCORERS:
        raise WatermarkError(f"unknown DWT method {method!r}; choose from {sorted(_SCORERS)}")
    return shared.memo(("dwt.scores", method, order, float(scale)),
                       lambda: _SCORERS[method](ll_blocks(shared, order), scale))


def read_bits_from_scores(scores: np.ndarray, n_bits: int) -> list[BitReading]:
    """(N, n_blocks) 0/1 scores -> one reading of ``n_bits`` per image: block ``i`` votes for
    bit ``i % n_bits`` and a bit is 1 when its mean vote times 255 exceeds 127, as the
    library averages."""
    nb = scores.shape[1]
    if nb < n_bits:
        raise WatermarkError(f"image has {nb} blocks, fewer than the {n_bits} bits to read")
    idx = np.arange(nb) % n_bits
    counts = np.bincount(idx, minlength=n_bits).astype(np.float64)
    out = []
    for row in scores:
        # sums of 0/1 votes are exact in float64, so the means equal the library's
        mean = np.bincount(idx, weights=row, minlength=n_bits) / counts
        bits = (mean * 255 > 127).astype(np.uint8)
        out.append(BitReading(bits, mean, float(np.abs(2 * mean - 1).mean())))
    return out


class _DwtBackend(WatermarkBackend):
    method = ""
    n_bits = 64
    min_side = 256
    #: quantisation step of the U channel; ``None``: the library's default (36), and the
    #: library is called exactly as before, without a ``scales`` argument
    scale: float | None = None
    soft_threshold = 127 / 255  # the library: a bit is 1 when its mean vote times 255 exceeds 127
    # Pixels per vectorised chunk. Measured on 2 CPU cores: chunks larger than one 512x512
    # image were slower per image (cache pressure), so batching groups only small images.
    max_batch_pixels = 512 * 512

    def embed(self, rgb: np.ndarray, bits) -> np.ndarray:
        from imwatermark import WatermarkEncoder

        self.check_image(rgb)
        b = self.check_bits(bits)
        enc = WatermarkEncoder()
        enc.set_watermark("bits", b.tolist())
        bgr = np.ascontiguousarray(rgb[..., ::-1])
        out = enc.encode(bgr, self.method, **self._library_configs())
        return np.ascontiguousarray(out[..., ::-1])

    def _library_configs(self) -> dict:
        return {} if self.scale is None else {"scales": [0, self.scale, 0]}

    @property
    def step(self) -> float:
        return _SCALE if self.scale is None else float(self.scale)

    def read_bits_shared(self, shared: SharedTransforms, n_bits: int | None = None) -> list[BitReading]:
        if len(shared.shape) != 3 or min(shared.shape[:2]) < self.min_side:
            raise WatermarkError(f"{self.name}: image of shape {shared.shape} below {self.min_side}x{self.min_side}")
        return read_bits_from_scores(block_scores(shared, self.method, "bgr", self.step), n_bits or self.n_bits)

    def read_bits_batch(self, images: Sequence[np.ndarray], n_bits: int | None = None) -> list[BitReading]:
        out: list[BitReading | None] = [None] * len(images)
        for idx, shared in group_by_shape(images, self.max_batch_pixels):
            for i, r in zip(idx, self.read_bits_shared(shared, n_bits), strict=True):
                out[i] = r
        return out  # type: ignore[return-value]

    def read_bits_reference(self, rgb: np.ndarray, n_bits: int | None = None) -> np.ndarray:
        from imwatermark import WatermarkDecoder

        dec = WatermarkDecoder("bits", n_bits or self.n_bits)
        return np.asarray(dec.decode(np.ascontiguousarray(rgb[..., ::-1]), self.method, **self._library_configs()),
                          dtype=np.uint8)


@register_watermark("dwtDctSvd")
class DwtDctSvd(_DwtBackend):
    """invisible-watermark DWT-DCT-SVD, 64-bit payload (default backend)."""

    method = "dwtDctSvd"


@register_watermark("dwtDct")
class DwtDct(_DwtBackend):
    """invisible-watermark DWT max-coefficient ('dwtDct'), 64-bit payload (compatibility)."""

    method = "dwtDct"


#: Quantisation step of :class:`DwtDctSvdVideo`, chosen on the clips of
#: ``benchmarks/video_watermark.py`` (``benchmarks/results/video_watermark.json``,
#: ``docs/video.md``): at the library's 36, H.264's chroma quantisation at CRF 23 flips more
#: pooled bits than the code corrects on some clips; 48 corrects them and keeps the marked
#: frames at 38 dB PSNR or more (52 went below 38 dB on one clip).
VIDEO_SCALE = 48.0


@register_watermark("dwtDctSvdVideo")
class DwtDctSvdVideo(_DwtBackend):
    """invisible-watermark DWT-DCT-SVD at step 48 for video frames (H.264), 64-bit payload."""

    method = "dwtDctSvd"
    scale = VIDEO_SCALE
