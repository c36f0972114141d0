"""Provenance: watermark payloads, watermark backends, C2PA signing and verification,
metadata signals, known-generator signatures, and the provenance store.

One mechanism per module: ``payload`` (BCH codec), ``watermarks`` (registry, detection),
``dwt`` / ``rivagan`` / ``learned_wm`` (backends; ``learned_wm_train`` trains the last),
``keys`` and ``c2pa_manifest`` (C2PA), ``store`` and ``phash`` (records), ``metadata``
and ``known_generators`` (signals), ``stamp``, ``verify`` and ``robustness``.

>>> from genvis_trust.provenance import get_codec, list_watermarks
>>> get_codec("p64").n_bits, "dwtDctSvd" in list_watermarks()
(64, True)
"""

from . import dwt, learned_wm, rivagan  # noqa: F401  (register the built-in watermark backends)
from .payload import CODECS, DecodedPayload, PayloadCodec, PayloadError, get_codec
from .watermarks import (
    DEFAULT_BACKEND,
    WatermarkDetection,
    WatermarkError,
    detect,
    detect_batch,
    get_watermark,
    list_watermarks,
)

__all__ = [
    "CODECS",
    "DEFAULT_BACKEND",
    "DecodedPayload",
    "PayloadCodec",
    "PayloadError",
    "WatermarkDetection",
    "WatermarkError",
    "detect",
    "detect_batch",
    "get_codec",
    "get_watermark",
    "list_watermarks",
]
