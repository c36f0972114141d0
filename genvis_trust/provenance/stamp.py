"""Stamp an image: watermark first, then a signed C2PA manifest, then a store record.

Order matters: the manifest's hard binding (``c2pa.hash.data``) covers the final pixels,
so the watermark goes in before signing; the store record is reserved first because its
id is in the watermark payload, beside the store's issuer id and the generative flag of
the recorded IPTC digital source type (``source_type``: ``trainedAlgorithmicMedia`` by
default, ``digitalCapture`` and the other capture types for photographs).

Audio and PDF files (:func:`stamp_media`) get a signed C2PA manifest and a store record,
without a watermark: the watermark backends embed in pixels. The store finds such a file
again by its C2PA record id or its exact sha256. Videos get a watermark in every frame as
well (:func:`genvis_trust.video.stamp.stamp_video`; :func:`stamp_media` still signs one
without touching its frames).

Encoding: JPEG is written 4:4:4 (OpenCV's and Pillow's default 4:2:0 chroma subsampling
erases the DWT marks, which live in the U channel), quality 95; WebP is written lossless
(lossy WebP always subsamples chroma); PNG as is. After encoding, the watermark is read
back from the encoded bytes and the stamp fails loudly if the payload does not survive.
"""

from __future__ import annotations

import io
import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from cryptography.hazmat.primitives import hashes

from genvis_trust import __version__
from genvis_trust.io import atomic_write_bytes, decode_image, encode_image, sha256_bytes

from .c2pa_manifest import (
    DST_COMPOSITE,
    DST_TRAINED,
    build_manifest,
    is_generative,
    sign_image_bytes,
    source_type_uri,
)
from .keys import SigningMaterial
from .payload import PAYLOAD_VERSION, get_codec
from .phash import phash
from .store import ProvenanceStore
from .watermarks import DEFAULT_BACKEND, WatermarkError, detection_from_reading, get_watermark

__all__ = ["MediaStampResult", "StampError", "StampOptions", "StampResult", "encode_for_stamp", "stamp_array", "stamp_media",
           "stamp_options"]

STAMP_FORMATS = ("JPEG", "PNG", "WEBP")
EXTENSIONS = {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp"}


class StampError(RuntimeError):
    """Stamping failed: image too small, unsupported format, watermark lost in encoding."""


@dataclass(frozen=True)
class StampOptions:
    """What a stamp records about the content, the same for every medium (:func:`stamp_media`,
    :func:`genvis_trust.video.stamp.stamp_video`): it goes into the C2PA manifest and the
    store's record. ``source_type``: IPTC digital source type (short name or URI); default
    ``trainedAlgorithmicMedia`` (``compositeWithTrainedAlgorithmicMedia`` when ``edited``).
    ``title``: the manifest's title (default: the output file's name)."""

    generator: str = "unknown"
    family: str | None = None
    checkpoint_sha256: str | None = None
    edited: bool = False
    source_type: str | None = None
    title: str | None = None


def stamp_options(options: StampOptions | None = None, fields: dict[str, Any] | None = None) -> StampOptions:
    """``options`` with ``fields`` (StampOptions' names, passed as keywords) put over it; an
    unknown name is a TypeError, as for any keyword."""
    return replace(options or StampOptions(), **(fields or {}))


@dataclass
class StampResult:
    path: str
    record_id: int
    backend: str
    payload_bits: str
    format: str
    sha256: str
    phash: str
    psnr_db: float
    manifest_bytes: int
    notes: list[str] = field(default_factory=list)
    source_type: str = "trainedAlgorithmicMedia"
    issuer_id: int | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def encode_for_stamp(rgb: np.ndarray, fmt: str, quality: int = 95) -> bytes:
    fmt = fmt.upper().replace("JPG", "JPEG")
    if fmt == "JPEG":
        return encode_image(rgb, "JPEG", quality=quality, subsampling="4:4:4")
    if fmt == "PNG":
        return encode_image(rgb, "PNG")
    if fmt == "WEBP":
        from PIL import Image

        buf = io.BytesIO()
        Image.fromarray(rgb).save(buf, format="WEBP", lossless=True, quality=100, method=4)
        return buf.getvalue()
    raise StampError(f"cannot stamp as {fmt}; choose from {', '.join(STAMP_FORMATS)}")


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def stamp_array(
    rgb: np.ndarray,
    out_path: str | os.PathLike,
    *,
    store: ProvenanceStore,
    material: SigningMaterial,
    fmt: str = "PNG",
    backend: str = DEFAULT_BACKEND,
    generator: str = "unknown",
    family: str | None = None,
    checkpoint_sha256: str | None = None,
    edited: bool = False,
    quality: int = 95,
    title: str | None = None,
    source_type: str | None = None,
) -> StampResult:
    """Watermark, sign and record one RGB image; write it to ``out_path``.

    ``source_type``: IPTC digital source type (short name or URI) of the content; default
    ``trainedAlgorithmicMedia`` (``compositeWithTrainedAlgorithmicMedia`` when ``edited``).
    """
    be = get_watermark(backend)
    be.check_image(rgb, what=str(title or out_path))
    fmt = fmt.upper().replace("JPG", "JPEG")
    if fmt not in STAMP_FORMATS:
        raise StampError(f"cannot stamp as {fmt}; choose from {', '.join(STAMP_FORMATS)}")
    try:
        dst = source_type_uri(source_type) if source_type else (DST_COMPOSITE if edited else DST_TRAINED)
    except ValueError as e:
        raise StampError(str(e)) from None
    codec = get_codec(be.n_bits)
    issuer = store.issuer_id(codec.issuer_bits)
    store.bind_signer(material.signer_certificate.fingerprint(hashes.SHA256()).hex())
    rid = store.reserve_id()
    bits = codec.encode(rid, issuer=issuer, generative=is_generative(dst))
    marked = be.embed(rgb, bits)
    data = encode_for_stamp(marked, fmt, quality)
    # self-check on what will actually be shipped
    decoded = decode_image(data).array
    det = detection_from_reading(be, be.read_bits(decoded))
    if not det.detected or det.payload.get("record_id") != rid % codec.short_id_modulus \
            or det.payload.get("issuer_id") != issuer:
        raise StampError(
            f"{title or out_path}: the {backend} watermark did not survive {fmt} encoding "
            f"({det.matched_bits}/{codec.n_bits} bits); try PNG or another backend"
        )
    notes = []
    if det.payload.get("distance"):
        notes.append(f"{det.payload['distance']} payload bit(s) already wrong after encoding")
    bit_str = "".join(map(str, bits.tolist()))
    manifest = build_manifest(
        title=title or Path(out_path).name,
        generator=generator,
        family=family,
        checkpoint_sha256=checkpoint_sha256,
        edited=edited,
        watermark_backend=backend,
        payload_bits=bit_str,
        record_id=rid,
        tool_version=__version__,
        source_type=dst,
        issuer_id=issuer,
    )
    signed, manifest_bytes = sign_image_bytes(data, fmt, manifest, material)
    atomic_write_bytes(out_path, signed, mode=0o644)
    digest, ph = sha256_bytes(signed), phash(decoded)
    store.complete(
        rid,
        sha256=digest,
        phash=ph,
        manifest=manifest_bytes,
        backend=backend,
        payload_bits=bit_str,
        short_id=rid % codec.short_id_modulus,
        generator=generator,
        family=family,
        checkpoint_sha256=checkpoint_sha256,
        path=str(out_path),
        width=int(rgb.shape[1]),
        height=int(rgb.shape[0]),
        source_type=dst.rsplit("/", 1)[-1],
        payload_version=PAYLOAD_VERSION,
        issuer_id=issuer,
    )
    return StampResult(
        path=str(out_path),
        record_id=rid,
        backend=backend,
        payload_bits=bit_str,
        format=fmt,
        sha256=digest,
        phash=ph,
        psnr_db=round(_psnr(rgb, decoded), 2),
        manifest_bytes=len(manifest_bytes),
        notes=notes,
        source_type=dst.rsplit("/", 1)[-1],
        issuer_id=issuer,
    )


@dataclass
class MediaStampResult:
    path: str
    record_id: int
    media_type: str
    sha256: str
    manifest_bytes: int
    source_type: str
    issuer_id: int
    watermark: str = "none (video, audio and documents are signed, not watermarked)"

    def to_dict(self) -> dict:
        return asdict(self)


def reserve_record(store: ProvenanceStore, material: SigningMaterial, codec, *, source_type: str | None,
                   edited: bool, what: str) -> tuple[str, int, int]:
    """(digital source type URI, issuer id, reserved record id) for a new stamp; the store is
    bound to the signer's certificate."""
    try:
        dst = source_type_uri(source_type) if source_type else (DST_COMPOSITE if edited else DST_TRAINED)
    except ValueError as e:
        raise StampError(f"{what}: {e}") from None
    issuer = store.issuer_id(codec.issuer_bits)
    store.bind_signer(material.signer_certificate.fingerprint(hashes.SHA256()).hex())
    return dst, issuer, store.reserve_id()


def stamp_media(
    data: bytes,
    out_path: str | os.PathLike,
    *,
    store: ProvenanceStore,
    material: SigningMaterial,
    options: StampOptions | None = None,
    **fields: Any,
) -> MediaStampResult:
    """Sign a video, audio or PDF file with a C2PA manifest and record it; write it to
    ``out_path``. The media type comes from the content; c2pa-python's Builder must write it.
    ``options`` (or its fields as keywords): what the content is (:class:`StampOptions`)."""
    from genvis_trust.io import sniff_media_type

    o = stamp_options(options, fields)
    generator, family, checkpoint_sha256, edited = o.generator, o.family, o.checkpoint_sha256, o.edited
    source_type, title = o.source_type, o.title

    what = str(title or out_path)
    mime = sniff_media_type(data)
    if mime is None or mime.startswith("image/"):
        raise StampError(f"{what}: {mime or 'unrecognised content'}: stamp_media signs video, audio and documents")
    # the issuer is named in the manifest even without a mark, so records stay tied to their store
    dst, issuer, rid = reserve_record(store, material, get_codec("p64"), source_type=source_type, edited=edited,
                                      what=what)
    manifest = build_manifest(title=title or Path(out_path).name, generator=generator, family=family,
                              checkpoint_sha256=checkpoint_sha256, edited=edited, record_id=rid,
                              tool_version=__version__, source_type=dst, issuer_id=issuer)
    try:
        signed, manifest_bytes = sign_image_bytes(data, mime, manifest, material)
    except ValueError as e:
        raise StampError(f"{what}: {e}") from None
    except Exception as e:  # c2pa's own refusals (a malformed container) name the file too
        raise StampError(f"{what}: C2PA signing of {mime} failed: {str(e)[:300]}") from None
    atomic_write_bytes(out_path, signed, mode=0o644)
    digest = sha256_bytes(signed)
    store.complete(rid, sha256=digest, manifest=manifest_bytes, generator=generator, family=family,
                   checkpoint_sha256=checkpoint_sha256, path=str(out_path),
                   source_type=dst.rsplit("/", 1)[-1], payload_version=None, issuer_id=issuer)
    return MediaStampResult(str(out_path), rid, mime, digest, len(manifest_bytes), dst.rsplit("/", 1)[-1], issuer)


def stamp_corpus(
    corpus_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    store: ProvenanceStore,
    material: SigningMaterial,
    backend: str = DEFAULT_BACKEND,
    fmt: str = "PNG",
    upscale: int | None = None,
    on_image=None,
) -> dict:
    """Stamp every image of a generated corpus into a new corpus at ``out_dir``.

    The generator name, family and checkpoint sha256 come from each manifest record, so the
    C2PA manifest states what made the image; each output record keeps the input's
    family/seed/checkpoint and adds ``provenance`` (store record id, backend, payload, C2PA).
    ``upscale``: enlarge images smaller than the watermark's minimum side to this side
    (bicubic) first, and say so in the record; without it they are reported as failures.
    """
    import cv2

    from genvis_trust.datasets import CorpusWriter, read_corpus
    from genvis_trust.io import load_image

    src = read_corpus(corpus_dir)
    out_dir = Path(out_dir)
    tmp = out_dir / ".stamping"
    tmp.mkdir(parents=True, exist_ok=True)
    card = {"stamped_from": str(corpus_dir), "source_card": src.card, "watermark_backend": backend, "upscale": upscale}
    failures: list[dict] = []
    with CorpusWriter(out_dir, card=card, image_format=fmt) as w:  # refuses to overwrite a corpus
        for rec in src.records:
            name = rec["path"]
            try:
                if rec["label"] != "generated":
                    raise StampError(f"{name}: label is {rec['label']!r}; only generated images are stamped")
                arr = load_image(src.file(rec)).array
                notes = []
                if upscale and min(arr.shape[:2]) < upscale:
                    f = upscale / min(arr.shape[:2])
                    size = (round(arr.shape[1] * f), round(arr.shape[0] * f))
                    arr = cv2.resize(arr, size, interpolation=cv2.INTER_CUBIC)
                    notes.append(f"enlarged x{f:g} (bicubic) before stamping")
                meta = rec.get("meta") or {}
                generator = meta.get("generator") or rec.get("source") or "unknown"
                dest = tmp / f"{w.count:06d}{EXTENSIONS[fmt.upper()]}"
                res = stamp_array(arr, dest, store=store, material=material, fmt=fmt, backend=backend,
                                  generator=str(generator), family=rec.get("family"),
                                  checkpoint_sha256=rec.get("checkpoint_sha256"), title=name)
                data = dest.read_bytes()
                dest.unlink()
                w.add(arr, data=data, label="generated", source=rec.get("source") or "stamped", key=name,
                      group=rec.get("group"), class_id=rec.get("class_id"), family=rec.get("family"),
                      seed=rec.get("seed"), checkpoint_sha256=rec.get("checkpoint_sha256"),
                      provenance={"record_id": res.record_id, "backend": backend, "payload_bits": res.payload_bits,
                                  "c2pa": True, "psnr_db": res.psnr_db, "notes": notes},
                      meta={**meta, "stamped_from": name})
            except (StampError, WatermarkError, ValueError, OSError) as e:
                failures.append({"input": name, "error": str(e)})
            if on_image is not None:
                on_image(name)
        written = w.count
    try:
        tmp.rmdir()
    except OSError:
        pass
    return {"out": str(out_dir), "stamped": written, "failures": failures}
