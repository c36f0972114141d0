"""C2PA manifests with c2pa-python: build and sign at stamp time, read and validate later.

Signing embeds a manifest whose ``c2pa.actions`` carries ``c2pa.created`` with the IPTC
digital source type (``trainedAlgorithmicMedia``, or ``compositeWithTrainedAlgorithmicMedia``
for edits), the generator as software agent (name, family, checkpoint sha256), a
``c2pa.watermarked`` action, and a ``c2pa.soft-binding`` assertion whose value is the
watermark payload, so a copy stripped of its manifest can be tied back to it.

Reading works on every format c2pa-python reads (images, video, audio, PDF, Office
documents, ...): the media type is sniffed from the content (``io.sniff_media_type``),
never taken from the file name. It reports the library's own verdict (``Invalid`` /
``Valid`` / ``Trusted``) with the raw validation status codes, and a ``status``:

- ``manifest``: a manifest was read and validated (``state`` holds the verdict);
- ``none``: no C2PA data; ``format_not_supported``: c2pa-python does not read this type;
- ``remote``: the manifest lives at ``remote_url``; it is fetched only when asked
  (``fetch_remote=True``, the CLI's ``--fetch-remote``), offline by default;
- ``unsupported``: C2PA data the library recognises but does not validate (prerelease);
- ``unreadable``: C2PA data that could not be parsed (hostile or broken files).

Trust anchors are PEM bundles passed in; without them a correctly signed manifest is
``Valid`` (and ``signingCredential.untrusted`` is listed).
"""

from __future__ import annotations

import base64
import functools
import io
import json
import re
import threading
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, BinaryIO

if TYPE_CHECKING:  # keys imports cryptography's x509 (~0.2 s), which reading C2PA never needs
    from .keys import SigningMaterial

__all__ = [
    "DST_COMPOSITE",
    "DST_TRAINED",
    "SOURCE_TYPES",
    "C2paInfo",
    "build_manifest",
    "read_c2pa",
    "sign_image_bytes",
    "source_type_indicates",
    "source_type_uri",
]

IPTC = "http://cv.iptc.org/newscodes/digitalsourcetype/"
DST_TRAINED = IPTC + "trainedAlgorithmicMedia"
DST_COMPOSITE = IPTC + "compositeWithTrainedAlgorithmicMedia"
#: IPTC digital source types ``stamp --source-type`` accepts, and what each says about the
#: content: ``generated`` and ``edited`` (generative AI in it) set the payload's generative
#: flag; every other type records stamped content that is not generated (a capture, a
#: composite of captures, human-made art).
SOURCE_TYPES: dict[str, str] = {
    "trainedAlgorithmicMedia": "generated",
    "algorithmicMedia": "generated",
    "compositeWithTrainedAlgorithmicMedia": "edited",
    "compositeSynthetic": "edited",
    "digitalCapture": "authentic_provenance",
    "computationalCapture": "authentic_provenance",
    "negativeFilm": "authentic_provenance",
    "positiveFilm": "authentic_provenance",
    "print": "authentic_provenance",
    "screenCapture": "authentic_provenance",
    "compositeCapture": "authentic_provenance",
    "composite": "authentic_provenance",
    "minorHumanEdits": "authentic_provenance",
    "humanEdits": "authentic_provenance",
    "algorithmicallyEnhanced": "authentic_provenance",
    "digitalArt": "authentic_provenance",
    "virtualRecording": "authentic_provenance",
    "dataDrivenMedia": "authentic_provenance",
}


def source_type_uri(name: str) -> str:
    """The IPTC URI for a short or full digital source type name; ValueError if unknown."""
    short = str(name).rsplit("/", 1)[-1]
    if short not in SOURCE_TYPES:
        raise ValueError(f"unknown digital source type {name!r}; choose from {', '.join(SOURCE_TYPES)}")
    return IPTC + short


def source_type_indicates(uri: str | None) -> str:
    """``generated`` / ``edited`` / ``authentic_provenance`` for a digital source type
    (``none`` when absent or not in the IPTC vocabulary)."""
    if not uri:
        return "none"
    return SOURCE_TYPES.get(str(uri).rsplit("/", 1)[-1], "none")


def is_generative(uri: str | None) -> bool:
    return source_type_indicates(uri) in ("generated", "edited")
SOFT_BINDING_ALG_PREFIX = "io.github.genvis-trust.watermark"
GENERATOR_ASSERTION = "io.github.genvis-trust.generator"

MIME = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp", "TIFF": "image/tiff", "GIF": "image/gif",
        "HEIC": "image/heic", "AVIF": "image/avif", "JXL": "image/jxl", "SVG": "image/svg+xml"}

_BASE_SETTINGS: dict[str, Any] = {
    "verify": {"remote_manifest_fetch": False, "ocsp_fetch": False, "verify_trust": True},
    "builder": {"thumbnail": {"enabled": False}},
}
_ctx_lock = threading.Lock()
_contexts: dict[str, Any] = {}


def _context(trust_anchors_pem: str | None, fetch_remote: bool = False):
    import c2pa

    key = (trust_anchors_pem or "", fetch_remote)
    with _ctx_lock:
        if key not in _contexts:
            settings = json.loads(json.dumps(_BASE_SETTINGS))
            settings["verify"]["remote_manifest_fetch"] = fetch_remote
            if trust_anchors_pem:
                settings["trust"] = {"trust_anchors": trust_anchors_pem}
            _contexts[key] = c2pa.Context(c2pa.Settings.from_dict(settings))
        return _contexts[key]


def build_manifest(
    *,
    title: str,
    generator: str,
    family: str | None = None,
    checkpoint_sha256: str | None = None,
    edited: bool = False,
    watermark_backend: str | None = None,
    payload_bits: str | None = None,
    record_id: int | None = None,
    tool_version: str = "",
    source_type: str | None = None,
    issuer_id: int | None = None,
) -> dict:
    """The manifest definition c2pa-python's Builder signs. ``source_type``: an IPTC
    digital source type (default ``trainedAlgorithmicMedia``, or the composite one when
    ``edited``); a capture is recorded without a generator as software agent."""
    dst = source_type_uri(source_type) if source_type else (DST_COMPOSITE if edited else DST_TRAINED)
    agent = {"name": generator}
    params: dict[str, Any] = {}
    if family:
        params["family"] = family
    if checkpoint_sha256:
        params["checkpoint_sha256"] = checkpoint_sha256
    generative = is_generative(dst)
    created: dict[str, Any] = {"action": "c2pa.created", "digitalSourceType": dst}
    if generative:
        created["softwareAgent"] = agent
        if params:
            created["parameters"] = params
    actions: list[dict] = [created]
    assertions: list[dict] = []
    if watermark_backend and payload_bits:
        alg = f"{SOFT_BINDING_ALG_PREFIX}.{watermark_backend}.p{len(payload_bits)}"
        actions.append(
            {
                "action": "c2pa.watermarked",
                "softwareAgent": {"name": "genvis-trust", "version": tool_version},
                "parameters": {"description": f"invisible watermark {watermark_backend}", "alg": alg},
            }
        )
        value = base64.b64encode(int(payload_bits, 2).to_bytes((len(payload_bits) + 7) // 8, "big")).decode()
        assertions.append(
            {"label": "c2pa.soft-binding", "data": {"alg": alg, "blocks": [{"scope": {}, "value": value}]}}
        )
    assertions.insert(0, {"label": "c2pa.actions", "data": {"actions": actions}})
    gen = {"generator": generator if generative else None, "family": family, "checkpoint_sha256": checkpoint_sha256,
           "record_id": record_id, "source_type": dst.rsplit("/", 1)[-1],
           "issuer_id": f"{issuer_id:#x}" if issuer_id is not None else None}
    assertions.append({"label": GENERATOR_ASSERTION, "data": {k: v for k, v in gen.items() if v is not None}})
    return {
        "claim_generator_info": [{"name": "genvis-trust", "version": tool_version}],
        "title": title,
        "assertions": assertions,
    }


def sign_image_bytes(data: bytes, fmt: str, manifest: dict, material: SigningMaterial) -> tuple[bytes, bytes]:
    """Sign ``data`` (an encoded file of format ``fmt``: one of our image format names, or
    a MIME type c2pa-python's Builder writes, e.g. ``video/mp4``, ``audio/wav``); returns
    (signed file, manifest bytes)."""
    import c2pa

    mime = fmt if "/" in fmt else MIME.get(fmt.upper())
    if mime is None or mime not in _builder_types():
        raise ValueError(f"C2PA signing of {fmt} is not supported by c2pa-python")
    signer = c2pa.Signer.from_info(
        c2pa.C2paSignerInfo(material.alg.encode(), material.chain_pem, material.key_pem, None)
    )
    try:
        builder = c2pa.Builder(manifest, context=_context(None))
        dst = io.BytesIO()
        manifest_bytes = builder.sign(signer, mime, io.BytesIO(data), dst)
    finally:
        signer.close()
    return dst.getvalue(), bytes(manifest_bytes)


@dataclass
class C2paInfo:
    """What C2PA says about one file."""

    present: bool = False
    status: str = "none"  # manifest | none | remote | unsupported | unreadable | format_not_supported
    media_type: str | None = None
    state: str | None = None  # Invalid | Valid | Trusted (c2pa-rs's validation state)
    embedded: bool | None = None
    remote_url: str | None = None
    remote_manifest_not_fetched: bool = False
    active_manifest: str | None = None
    claim_generator: str | None = None
    digital_source_types: list[str] = field(default_factory=list)
    actions: list[dict] = field(default_factory=list)
    signer: dict = field(default_factory=dict)
    signed_time: str | None = None
    soft_bindings: list[dict] = field(default_factory=list)
    generator_assertion: dict | None = None
    failure_codes: list[str] = field(default_factory=list)
    success_codes: list[str] = field(default_factory=list)
    informational_codes: list[str] = field(default_factory=list)
    ingredient_failure_codes: list[str] = field(default_factory=list)
    trust_anchors_configured: bool = False
    error: str | None = None
    reader_error: str | None = None  # the library's error kind (Remote, NotSupported, Other, ...)

    def to_dict(self) -> dict:
        return asdict(self)


def _codes(results: dict | None) -> tuple[list[str], list[str], list[str], list[str]]:
    """(failure, success, informational) codes of the active manifest, as the library lists
    them, and the failure codes of its ingredients (kept apart: they explain an Invalid
    state that the active manifest's own codes do not)."""
    if not results:
        return [], [], [], []
    active = results.get("activeManifest") or {}
    fail = [c.get("code", "") for c in active.get("failure", [])]
    ok = [c.get("code", "") for c in active.get("success", [])]
    info = [c.get("code", "") for c in active.get("informational", [])]
    ingredient_fail = []
    for g in results.get("ingredientDeltas") or []:
        g = g.get("validationDeltas", g) if isinstance(g, dict) else {}
        ingredient_fail += [c.get("code", "") for c in g.get("failure", [])]
    return fail, ok, info, ingredient_fail


def read_c2pa(data: bytes | BinaryIO, media_type: str | None = None, trust_anchors_pem: str | None = None,
              *, fetch_remote: bool = False) -> C2paInfo:
    """Read and validate the C2PA manifest store in ``data`` (bytes, or a seekable binary
    file for media too large to hold in memory); never raises for bad input.

    ``media_type``: a MIME type, or one of our image format names (``JPEG``); sniffed
    from the content when omitted.
    """
    import c2pa

    from genvis_trust.io import sniff_media_type
    from genvis_trust.media import c2pa_reader_types

    info = C2paInfo(trust_anchors_configured=bool(trust_anchors_pem))
    mime = media_type if media_type and "/" in media_type else MIME.get((media_type or "").upper())
    if isinstance(data, (bytes, bytearray, memoryview)):
        head, stream = bytes(data[:4096]), io.BytesIO(data)
    else:
        stream = data
        head = stream.read(4096)
        stream.seek(0)
    mime = mime or sniff_media_type(head)
    info.media_type = mime
    if mime is None or mime not in c2pa_reader_types():
        info.status = "format_not_supported"
        return info
    try:
        reader = c2pa.Reader.try_create(mime, stream, None, _context(trust_anchors_pem, fetch_remote))
    except c2pa.C2paError as e:
        msg = str(e)
        kind = msg.split(":", 1)[0].strip()
        info.reader_error = kind
        if kind == "Remote" or "remote manifest" in msg.lower():
            info.present, info.status = True, "remote"
            info.embedded = False
            info.remote_manifest_not_fetched = not fetch_remote
            info.remote_url = _remote_url_hint(msg)
            if fetch_remote:  # asked to fetch, and the fetch itself failed
                info.error = f"remote manifest could not be fetched: {msg[:300]}"
            return info
        if "prerelease" in msg.lower():
            info.present, info.status = True, "unsupported"
            info.error = f"prerelease C2PA manifest: not validated ({msg[:200]})"
            return info
        if kind == "NotSupported":
            info.status = "format_not_supported"
            return info
        info.status = "unreadable"
        info.error = f"C2PA data could not be read: {msg[:500]}"
        # a JUMBF box that cannot be parsed still means a manifest was there
        info.present = "jumbf" in msg.lower() or "manifest" in msg.lower() or "claim" in msg.lower()
        return info
    except Exception as e:  # the native layer must never take the scan down
        info.status = "unreadable"
        info.error = f"C2PA reader failed: {type(e).__name__}: {str(e)[:300]}"
        return info
    if reader is None:
        return info
    with reader:
        info.present, info.status = True, "manifest"
        try:
            info.embedded = bool(reader.is_embedded())
            info.remote_url = reader.get_remote_url()
            info.state = reader.get_validation_state()
            (info.failure_codes, info.success_codes, info.informational_codes,
             info.ingredient_failure_codes) = _codes(reader.get_validation_results())
            store = json.loads(reader.json())
        except Exception as e:
            info.status = "unreadable"
            info.error = f"C2PA manifest unreadable: {type(e).__name__}: {str(e)[:300]}"
            return info
    info.active_manifest = store.get("active_manifest")
    m = (store.get("manifests") or {}).get(info.active_manifest or "", {})
    gens = m.get("claim_generator_info") or []
    if gens:
        g = gens[0]
        info.claim_generator = " ".join(str(x) for x in (g.get("name"), g.get("version")) if x)
    elif m.get("claim_generator"):
        info.claim_generator = str(m["claim_generator"])
    for a in m.get("assertions") or []:
        label = str(a.get("label", ""))
        d = a.get("data") or {}
        if label.startswith("c2pa.actions"):
            for act in d.get("actions") or []:
                info.actions.append(act)
                if act.get("digitalSourceType"):
                    info.digital_source_types.append(str(act["digitalSourceType"]))
        elif label.startswith("c2pa.soft-binding"):
            info.soft_bindings.append(d)
        elif label == GENERATOR_ASSERTION:
            info.generator_assertion = d
    sig = m.get("signature_info") or {}
    info.signer = {k: sig.get(k) for k in ("alg", "issuer", "common_name", "cert_serial_number") if sig.get(k)}
    info.signed_time = sig.get("time")
    return info


@functools.cache
def _builder_types() -> frozenset[str]:
    import c2pa

    return frozenset(c2pa.Builder.get_supported_mime_types())


def _remote_url_hint(msg: str) -> str | None:
    m = re.search(r"https?://[^\s\"'()<>]+", msg)
    return m.group(0) if m else None
