"""Invisible-watermark backends: a registry, the shared interface, and detection.

Every backend embeds and reads a fixed number of bits in an RGB ``uint8`` image and is
built on `invisible-watermark <https://github.com/ShieldMnt/invisible-watermark>`_:

- ``dwtDctSvd`` (default, 64 bits): the library's DWT-DCT-SVD embedder;
- ``dwtDctSvdVideo`` (64 bits): the same embedder at a larger quantisation step (48
  instead of 36), for video frames, which H.264's chroma quantisation damages more than
  JPEG 4:4:4 does (``stamp`` of a video; ``docs/video.md``);
- ``dwtDct`` (64 bits): the library's DWT "max-DCT" embedder, kept because other tools
  (Stable Diffusion) embed with it; it is the least robust of the three (see the
  robustness table in ``docs/provenance.md``);
- ``rivaGan`` (32 bits): the library's learned RivaGAN encoder/decoder (ONNX).

Reading a batch (:meth:`WatermarkBackend.read_bits_batch`) uses a vectorised decoder for
the DWT backends that reproduces the library's bits (verified against the library in the
tests and the benchmark).

Readers share their intermediates through :class:`SharedTransforms`: the pixels of one
batch of same-size images plus every transform computed from them (the DWT backends'
colour conversion and wavelet transform, once per channel order), so that checking an
image with our backends *and* every known generator's mark transforms it once per channel
order instead of once per reader.

:func:`detect` decodes the bits with the payload codec and says whether our watermark is
present: ``detected`` only for a valid payload, whose false-accept rate for random bits is
stated in the result.

>>> sorted(list_watermarks())
['dwtDct', 'dwtDctSvd', 'dwtDctSvdVideo', 'learnedWm', 'rivaGan']
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from genvis_trust.registry import Registry

from .payload import DecodedPayload, get_codec

__all__ = [
    "DEFAULT_BACKEND",
    "BitReading",
    "SharedTransforms",
    "WatermarkBackend",
    "WatermarkDetection",
    "WATERMARKS",
    "WatermarkError",
    "binomial_sf",
    "detect",
    "get_watermark",
    "list_watermarks",
    "register_watermark",
    "shared_readings",
]

DEFAULT_BACKEND = "dwtDctSvd"


class WatermarkError(ValueError):
    """An image the backend cannot handle (too small, wrong type) or an unknown backend."""


# the built-in backends (dwt, rivagan) register when the package imports them
# (provenance/__init__): this module, which they import, names none of them
WATERMARKS: Registry[Callable[[], WatermarkBackend]] = Registry("watermark backend", error=WatermarkError)
_INSTANCES: dict[str, WatermarkBackend] = {}


def register_watermark(name: str):
    return WATERMARKS.decorator(name, name=name)


def list_watermarks() -> dict[str, str]:
    """Registered backends: name -> one-line description."""
    return {n: (c.__doc__ or "").strip().splitlines()[0] for n, c in WATERMARKS.list().items()}


def get_watermark(name: str = DEFAULT_BACKEND) -> WatermarkBackend:
    """The backend instance for ``name`` (instances are shared: they hold loaded models)."""
    if name not in _INSTANCES:
        _INSTANCES[name] = WATERMARKS.create(name)
    return _INSTANCES[name]


class SharedTransforms:
    """A batch of same-size ``H x W x 3`` uint8 RGB images and the transforms readers share.

    A transform is computed on first use and kept (:meth:`memo`), keyed by what it is, e.g.
    ``("dwt.ll", "bgr")``; readers never copy or modify ``images``. Build one per image (or
    per batch of same-size images) and hand it to every reader.
    """

    def __init__(self, images: Sequence[np.ndarray]):
        self.images = tuple(images)
        if not self.images:
            raise WatermarkError("SharedTransforms needs at least one image")
        for im in self.images:
            if not isinstance(im, np.ndarray) or im.dtype != np.uint8 or im.ndim != 3 or im.shape[2] != 3:
                raise WatermarkError("expected H x W x 3 uint8 RGB arrays")
        self.shape = self.images[0].shape
        if any(im.shape != self.shape for im in self.images):
            raise WatermarkError("SharedTransforms holds images of one shape; group images by shape first")
        self._memo: dict[tuple, object] = {}

    def __len__(self) -> int:
        return len(self.images)

    def memo(self, key: tuple, compute: Callable[[], object]):
        """``compute()`` the first time ``key`` is asked for, the kept value afterwards."""
        if key not in self._memo:
            self._memo[key] = compute()
        return self._memo[key]


def group_by_shape(images: Sequence[np.ndarray], max_pixels: int | None = None) -> list[tuple[list[int], SharedTransforms]]:
    """Indices of ``images`` grouped by shape (in chunks of at most ``max_pixels`` pixels, at
    least one image each), with a :class:`SharedTransforms` per chunk."""
    groups: dict[tuple, list[int]] = {}
    for i, im in enumerate(images):
        groups.setdefault(im.shape, []).append(i)
    out = []
    for shape, idx in groups.items():
        per = len(idx) if max_pixels is None else max(1, max_pixels // max(1, shape[0] * shape[1]))
        for s in range(0, len(idx), per):
            chunk = idx[s : s + per]
            out.append((chunk, SharedTransforms([images[i] for i in chunk])))
    return out


@dataclass
class BitReading:
    """Bits read from one image; ``confidence`` in [0, 1] is how far the soft scores sit
    from the decision threshold on average (0: a coin toss for every bit)."""

    bits: np.ndarray  # uint8 0/1
    soft: np.ndarray  # per-bit soft score in [0, 1] (1 means "bit is 1")
    confidence: float


class WatermarkBackend:
    """Interface of a watermark backend. Images are ``H x W x 3`` ``uint8`` RGB."""

    name: str = ""
    n_bits: int = 64
    min_side: int = 256
    #: channel order the underlying library expects; we convert from RGB for it
    library_order: str = "BGR"
    #: a bit is 1 when its soft score exceeds this (the reader's own rule; a video pools the
    #: frames' soft scores and applies it once)
    soft_threshold: float = 0.5

    def check_image(self, rgb: np.ndarray, what: str = "image") -> np.ndarray:
        if not isinstance(rgb, np.ndarray) or rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
            raise WatermarkError(f"{what}: expected an H x W x 3 uint8 RGB array")
        h, w = rgb.shape[:2]
        if min(h, w) < self.min_side:
            raise WatermarkError(
                f"{what}: {w}x{h} is below the {self.name} minimum of "
                f"{self.min_side}x{self.min_side}; the watermark would not be readable"
            )
        return rgb

    def check_bits(self, bits) -> np.ndarray:
        b = np.asarray(bits, dtype=np.uint8).ravel()
        if b.size != self.n_bits or b.max(initial=0) > 1:
            raise WatermarkError(f"{self.name} embeds exactly {self.n_bits} bits of 0/1, got {b.size}")
        return b

    def embed(self, rgb: np.ndarray, bits) -> np.ndarray:
        raise NotImplementedError

    def embed_batch(self, images: Sequence[np.ndarray], bits: Sequence) -> list[np.ndarray]:
        return [self.embed(im, b) for im, b in zip(images, bits, strict=True)]

    def read_bits(self, rgb: np.ndarray) -> BitReading:
        return self.read_bits_batch([rgb])[0]

    def read_bits_batch(self, images: Sequence[np.ndarray]) -> list[BitReading]:
        raise NotImplementedError

    def read_bits_shared(self, shared: SharedTransforms) -> list[BitReading]:
        """Bits of every image in ``shared``, reusing (and leaving for the next reader) the
        transforms already computed there. Backends without a shareable transform read
        the pixels."""
        return self.read_bits_batch(shared.images)

    def read_bits_reference(self, rgb: np.ndarray) -> np.ndarray:
        """Bits as the unmodified library decodes them (slow; for verification)."""
        raise NotImplementedError


def binomial_sf(k: int, n: int, p: float = 0.5) -> float:
    """P(X >= k) for X ~ Binomial(n, p): the value of ``scipy.stats.binom.sf(k - 1, n, p)``.

    For p = 1/2 and the lengths we read (32, 48, 64, 136 bits) from a generated table of
    exactly those values (:mod:`.binomial_table`), because importing scipy.stats costs ~0.5 s
    on every scan; otherwise from scipy.stats itself. Checked against scipy in the tests.
    """
    if k <= 0:
        return 1.0
    if k > n:
        return 0.0
    if p == 0.5:
        from .binomial_table import SF_HALF

        if n in SF_HALF:
            return SF_HALF[n][k]
    from scipy.stats import binom

    return float(binom.sf(k - 1, n, p))


@dataclass
class WatermarkDetection:
    """Our watermark in one image, as one backend reads it."""

    backend: str
    detected: bool
    n_bits: int
    bits: str  # decoded bits as a 0/1 string
    confidence: float
    payload: dict  # DecodedPayload.to_dict()
    matched_bits: int | None  # bits agreeing with the nearest codeword (None: none found)
    p_value: float | None  # P(an unwatermarked image reads this close to a valid payload)
    error: str | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def detection_from_reading(backend: WatermarkBackend, reading: BitReading, radius: int | None = None) -> WatermarkDetection:
    codec = get_codec(backend.n_bits)
    dec: DecodedPayload = codec.decode(reading.bits, radius=radius)
    matched = None if dec.distance is None else codec.n_bits - dec.distance
    return WatermarkDetection(
        backend=backend.name,
        detected=dec.valid,
        n_bits=codec.n_bits,
        bits="".join(map(str, reading.bits.tolist())),
        confidence=round(float(reading.confidence), 4),
        payload=dec.to_dict(),
        matched_bits=matched,
        p_value=dec.p_value,
    )


def detect(rgb: np.ndarray, backend: str = DEFAULT_BACKEND, radius: int | None = None) -> WatermarkDetection:
    """Read and decode our payload from ``rgb`` with one backend.

    Too-small images give a detection with ``error`` set, not an exception.
    """
    be = get_watermark(backend)
    try:
        be.check_image(rgb)
    except WatermarkError as e:
        return WatermarkDetection(be.name, False, be.n_bits, "", 0.0, {}, None, None, error=str(e))
    return detection_from_reading(be, be.read_bits(rgb), radius)


def detect_shared(shared: SharedTransforms, backend: str = DEFAULT_BACKEND, radius: int | None = None) -> list[WatermarkDetection]:
    """:func:`detect` for every image of ``shared``, reading through its shared transforms."""
    be = get_watermark(backend)
    try:
        be.check_image(shared.images[0])  # one shape, one dtype: the first speaks for all
    except WatermarkError as e:
        return [WatermarkDetection(be.name, False, be.n_bits, "", 0.0, {}, None, None, error=str(e)) for _ in shared.images]
    return [detection_from_reading(be, r, radius) for r in shared_readings(shared, be)]


def shared_readings(shared: SharedTransforms, be: WatermarkBackend) -> list[BitReading]:
    """``be``'s readings of every image of ``shared``, read once and kept there, so that a
    later consumer (a video's pooling of the frames' soft scores) reuses them."""
    return shared.memo(("readings", be.name), lambda: be.read_bits_shared(shared))


def detect_batch(images: Sequence[np.ndarray], backend: str = DEFAULT_BACKEND, radius: int | None = None) -> list[WatermarkDetection]:
    be = get_watermark(backend)
    ok, out = [], [None] * len(images)
    for i, im in enumerate(images):
        try:
            be.check_image(im)
            ok.append(i)
        except WatermarkError as e:
            out[i] = WatermarkDetection(be.name, False, be.n_bits, "", 0.0, {}, None, None, error=str(e))
    if ok:
        for i, r in zip(ok, be.read_bits_batch([images[i] for i in ok]), strict=True):
            out[i] = detection_from_reading(be, r, radius)
    return out
