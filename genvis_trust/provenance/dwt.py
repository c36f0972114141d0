"""The two DWT backends of invisible-watermark, and a vectorised reader for both.

Embedding calls the library unchanged (``WatermarkEncoder.encode(bgr, method)``), so
what we write is what every other invisible-watermark user writes and reads.

Reading is reimplemented in numpy, vectorised over blocks *and* images, because the
library walks 4x4 blocks in a Python loop (4,096 blocks for a 512x512 image). The math
is the library's, step for step (``imwatermark/dwtDctSvd.py`` and ``maxDct.py``):

1. BGR -> YUV with OpenCV on ``uint8``; only channel 1 (U) carries bits (the library's
   ``scales=[0, 36, 0]`` / ``[0, 36, 36]`` with ``for channel in range(2)``);
2. one-level Haar DWT of ``U[:H//4*4, :W//4*4]``, keep the LL band (bit-identical to
   PyWavelets, computed directly);
3. 4x4 blocks in row-major order; block ``i`` carries bit ``i % n_bits``;
4. per block a 0/1 score: ``dwtDctSvd``: largest singular value ``s0`` of the block's DCT,
   score ``(s0 mod 36) > 18``; ``dwtDct``: the largest-magnitude coefficient after the
   first, score ``(|v| mod 36) > 18``;
5. a bit is 1 when the mean score of its blocks times 255 exceeds 127.

``read_bits_reference`` runs the library itself; tests and the benchmark compare the two.

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

from .watermarks import BitReading, WatermarkBackend, WatermarkError, register_watermark

_SCALE = 36.0
_BLOCK = 4


_HAAR = float(pywt.Wavelet("haar").dec_lo[0])


def _haar_ll(x: np.ndarray) -> np.ndarray:
    """LL band of a one-level Haar DWT over the last two axes, bit-identical to
    ``pywt.dwt2(x, "haar", axes=(-2, -1))[0]`` (same operations in the same order: rows of
    axis -2 first), and 8x faster than PyWavelets on a batch."""
    a = x[..., 0::2, :] * _HAAR + x[..., 1::2, :] * _HAAR
    return a[..., 0::2] * _HAAR + a[..., 1::2] * _HAAR


def _ll_blocks(bgr_batch: np.ndarray) -> np.ndarray:
    """(N, H, W, 3) uint8 BGR, one shape -> (N, n_blocks, 4, 4) LL blocks of the U channel."""
    n, h, w, _ = bgr_batch.shape
    # cvtColor is per pixel: converting the batch as one tall image gives the same values.
    yuv = cv2.cvtColor(bgr_batch.reshape(n * h, w, 3), cv2.COLOR_BGR2YUV).reshape(n, h, w, 3)
    u = yuv[:, : h // 4 * 4, : w // 4 * 4, 1].astype(np.float64)
    ll = _haar_ll(u)
    r, c = ll.shape[1] // _BLOCK, ll.shape[2] // _BLOCK
    ll = ll[:, : r * _BLOCK, : c * _BLOCK].reshape(n, r, _BLOCK, c, _BLOCK)
    return ll.transpose(0, 1, 3, 2, 4).reshape(n, r * c, _BLOCK, _BLOCK)


def _bits_from_scores(scores: np.ndarray, n_bits: int) -> tuple[np.ndarray, np.ndarray]:
    """(N, n_blocks) 0/1 scores -> (N, n_bits) bits and mean scores, as the library averages."""
    nb = scores.shape[1]
    idx = np.arange(nb) % n_bits
    onehot = np.zeros((nb, n_bits))
    onehot[np.arange(nb), idx] = 1.0
    counts = onehot.sum(0)
    if (counts == 0).any():
        raise WatermarkError(f"image has {nb} blocks, fewer than the {n_bits} bits to read")
    mean = (scores.astype(np.float64) @ onehot) / counts
    return (mean * 255 > 127).astype(np.uint8), mean


def _group_by_shape(images: Sequence[np.ndarray]) -> dict[tuple, list[int]]:
    groups: dict[tuple, list[int]] = {}
    for i, im in enumerate(images):
        groups.setdefault(im.shape, []).append(i)
    return groups


class _DwtBackend(WatermarkBackend):
    method = ""
    n_bits = 64
    min_side = 256
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
        out = enc.encode(bgr, self.method)
        return np.ascontiguousarray(out[..., ::-1])

    def _scores(self, blocks: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def read_bits_batch(self, images: Sequence[np.ndarray], n_bits: int | None = None) -> list[BitReading]:
        nbits = n_bits or self.n_bits
        out: list[BitReading | None] = [None] * len(images)
        for shape, idx in _group_by_shape(images).items():
            if len(shape) != 3 or min(shape[:2]) < self.min_side:
                raise WatermarkError(f"{self.name}: image of shape {shape} below {self.min_side}x{self.min_side}")
            per_chunk = max(1, self.max_batch_pixels // (shape[0] * shape[1]))
            for s in range(0, len(idx), per_chunk):
                chunk = idx[s : s + per_chunk]
                bgr = np.stack([images[i][..., ::-1] for i in chunk])
                scores = self._scores(_ll_blocks(bgr))
                bits, mean = _bits_from_scores(scores, nbits)
                for j, i in enumerate(chunk):
                    conf = float(np.abs(2 * mean[j] - 1).mean())
                    out[i] = BitReading(bits[j], mean[j], conf)
        return out  # type: ignore[return-value]

    def read_bits_reference(self, rgb: np.ndarray, n_bits: int | None = None) -> np.ndarray:
        from imwatermark import WatermarkDecoder

        dec = WatermarkDecoder("bits", n_bits or self.n_bits)
        return np.asarray(dec.decode(np.ascontiguousarray(rgb[..., ::-1]), self.method), dtype=np.uint8)


@register_watermark("dwtDctSvd")
class DwtDctSvd(_DwtBackend):
    """invisible-watermark DWT-DCT-SVD, 64-bit payload (default backend)."""

    method = "dwtDctSvd"

    def _scores(self, blocks: np.ndarray) -> np.ndarray:
        # The DCT is orthonormal, so the singular values of DCT(block) are the block's own;
        # the largest is sqrt of the top eigenvalue of B^T B (batched LAPACK, 1.6x faster
        # than a batched SVD). Agreement with the library's bits is checked in the tests.
        gram = np.swapaxes(blocks, -1, -2) @ blocks
        s0 = np.sqrt(np.maximum(np.linalg.eigvalsh(gram)[..., -1], 0.0))
        return (np.mod(s0, _SCALE) > _SCALE * 0.5).astype(np.uint8)


@register_watermark("dwtDct")
class DwtDct(_DwtBackend):
    """invisible-watermark DWT max-coefficient ('dwtDct'), 64-bit payload (compatibility)."""

    method = "dwtDct"

    def _scores(self, blocks: np.ndarray) -> np.ndarray:
        flat = blocks.reshape(*blocks.shape[:-2], _BLOCK * _BLOCK)[..., 1:]
        pos = np.argmax(np.abs(flat), axis=-1)
        val = np.abs(np.take_along_axis(flat, pos[..., None], axis=-1)[..., 0])
        return (np.mod(val, _SCALE) > _SCALE * 0.5).astype(np.uint8)


def read_dwtdct_bits(images: Sequence[np.ndarray], n_bits: int) -> list[BitReading]:
    """Read ``n_bits`` with the dwtDct reader (used for other tools' marks, e.g. SDXL's 48)."""
    return DwtDct().read_bits_batch(images, n_bits=n_bits)
