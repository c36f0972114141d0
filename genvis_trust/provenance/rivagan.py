"""RivaGAN (learned, 32 bits) through invisible-watermark's ONNX models and onnxruntime.

The two ONNX models (``rivagan_encoder.onnx``, ``rivagan_decoder.onnx``) ship inside the
``invisible-watermark`` wheel (``imwatermark/``), a declared dependency, so they are not
copied into this package; :data:`MODEL_SHA256` pins the files we tested with and loading
refuses anything else. onnxruntime is required (declared in ``pyproject.toml``).

Like the library we feed BGR frames scaled to [-1, 1] and threshold the decoder output at
0.52. Reading a batch of same-size images is one ONNX call. CPU cost is high: see
``docs/provenance.md`` (it is not in ``verify``'s default backend set for that reason).
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Sequence

import numpy as np

from .watermarks import BitReading, WatermarkBackend, WatermarkError, register_watermark

MODEL_SHA256 = {
    "rivagan_encoder.onnx": "66bc7814fadac7d686105c8ab26c6cf2cc8e40deb83e67bb6ef5b9de9b8ece0d",
    "rivagan_decoder.onnx": "6b006690cf352fa50a91a0b6d6241dbcded0a9957969e2c0665cf9a7011b3880",
}
_THRESHOLD = 0.52
_lock = threading.Lock()


def _model_dir() -> str:
    import imwatermark

    return os.path.dirname(os.path.abspath(imwatermark.__file__))


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@register_watermark("rivaGan")
class RivaGan(WatermarkBackend):
    """RivaGAN learned watermark (ONNX, invisible-watermark's models), 32-bit payload."""

    n_bits = 32
    soft_threshold = _THRESHOLD
    min_side = 256

    def __init__(self):
        self._enc = self._dec = None

    def _sessions(self):
        with _lock:
            if self._dec is None:
                try:
                    import onnxruntime as ort
                except ImportError:
                    raise WatermarkError("rivaGan needs onnxruntime: pip install onnxruntime") from None
                d = _model_dir()
                opts = ort.SessionOptions()
                opts.log_severity_level = 3
                sessions = []
                for name in ("rivagan_encoder.onnx", "rivagan_decoder.onnx"):
                    path = os.path.join(d, name)
                    if not os.path.isfile(path):
                        raise WatermarkError(f"rivaGan model {path} is missing from invisible-watermark")
                    want = MODEL_SHA256[name]
                    if want and _sha256(path) != want:
                        raise WatermarkError(f"rivaGan model {path} does not match the pinned sha256")
                    sessions.append(ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"]))
                self._enc, self._dec = sessions
        return self._enc, self._dec

    @staticmethod
    def _frames(images: Sequence[np.ndarray]) -> np.ndarray:
        """N, 3, 1, H, W float32 BGR in [-1, 1]: the model's input, written once (no BGR or
        uint8 stack in between), with the same float32 operations as the library."""
        h, w = images[0].shape[:2]
        frames = np.empty((len(images), 3, 1, h, w), np.float32)
        for i, im in enumerate(images):
            frames[i, :, 0] = im.transpose(2, 0, 1)[::-1]  # RGB planes reversed: BGR
        frames /= np.float32(127.5)
        frames -= np.float32(1.0)
        return frames

    def embed(self, rgb: np.ndarray, bits) -> np.ndarray:
        return self.embed_batch([rgb], [bits])[0]

    def embed_batch(self, images: Sequence[np.ndarray], bits: Sequence) -> list[np.ndarray]:
        enc, _ = self._sessions()
        out: list[np.ndarray] = []
        for im, b in zip(images, bits, strict=True):
            self.check_image(im)
            data = self.check_bits(b).astype(np.float32)[None]
            wm = enc.run(None, {"frame": self._frames([im]), "data": data})[0]
            wm = np.clip(wm, -1.0, 1.0)
            # as the library: (x + 1) * 127.5 then astype(uint8), i.e. truncation
            bgr = ((wm[0, :, 0].transpose(1, 2, 0) + 1.0) * 127.5).astype(np.uint8)
            out.append(np.ascontiguousarray(bgr[..., ::-1]))
        return out

    def read_bits_batch(self, images: Sequence[np.ndarray], batch_size: int = 8) -> list[BitReading]:
        _, dec = self._sessions()
        out: list[BitReading | None] = [None] * len(images)
        groups: dict[tuple, list[int]] = {}
        for i, im in enumerate(images):
            self.check_image(im)
            groups.setdefault(im.shape, []).append(i)
        for idx in groups.values():
            for s in range(0, len(idx), batch_size):
                chunk = idx[s : s + batch_size]
                raw = dec.run(None, {"frame": self._frames([images[i] for i in chunk])})[0]
                for j, i in enumerate(chunk):
                    soft = np.clip(raw[j].astype(np.float64), 0.0, 1.0)
                    bits = (raw[j] > _THRESHOLD).astype(np.uint8)
                    conf = float(np.clip(np.abs(raw[j] - _THRESHOLD) * 2, 0, 1).mean())
                    out[i] = BitReading(bits, soft, conf)
        return out  # type: ignore[return-value]

    def read_bits_reference(self, rgb: np.ndarray) -> np.ndarray:
        from imwatermark import WatermarkDecoder

        WatermarkDecoder.loadModel()
        dec = WatermarkDecoder("bits", 32)
        return np.asarray(dec.decode(np.ascontiguousarray(rgb[..., ::-1]), "rivaGan"), dtype=np.uint8)
