"""C2PA manifests with c2pa-python: build and sign at stamp time, read and validate later.

Signing embeds a manifest whose ``c2pa.actions`` carries ``c2pa.created`` with the IPTC
digital source type (``trainedAlgorithmicMedia``, or ``compositeWithTrainedAlgorithmicMedia``
for edits), the generator as software agent (name, family, checkpoint sha256), a
``c2pa.watermarked`` action, and a ``c2pa.soft-binding`` assertion whose value is the
watermark payload, so a copy stripped of its manifest can be tied back to it.

Reading reports the library's own verdict (``Invalid`` / ``Valid`` / ``Trusted``) with the
raw validation status codes. Trust anchors are PEM bundles passed in; without them a
correctly signed manifest is ``Valid`` (and ``signingCredential.untrusted`` is listed).
Remote manifests are never fetched (offline by design): such a file is reported with its
URL and ``remote_manifest_not_fetched``, not as an error of the tool. Parse failures of
hostile or broken files become an ``error`` string.
"""

from __future__ import annotations

import base64
import io
import json
import threading
from dataclasses import asdict, dataclass, field
from typing import Any

from .keys import SigningMaterial

__all__ = [
    "DST_COMPOSITE",
    "DST_TRAINED",
    "C2paInfo",
    "build_manifest",
    "read_c2pa",
    "sign_image_bytes",
]

IPTC = "http://cv.iptc.org/newscodes/digitalsourcetype/"
DST_TRAINED = IPTC + "trainedAlgorithmicMedia"
DST_COMPOSITE = IPTC + "compositeWithTrainedAlgorithmicMedia"
SOFT_BINDING_ALG_PREFIX = "io.github.genvis-trust.watermark"
GENERATOR_ASSERTION = "io.github.genvis-trust.generator"

MIME = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp", "TIFF": "image/tiff", "GIF": "image/gif"}

_BASE_SETTINGS: dict[str, Any] = {
    "verify": {"remote_manifest_fetch": False, "ocsp_fetch": False, "verify_trust": True},
    "builder": {"thumbnail": {"enabled": False}},
}
_ctx_lock = threading.Lock()
_contexts: dict[str, Any] = {}


def _context(trust_anchors_pem: str | None):
    import c2pa

    key = trust_anchors_pem or ""
    with _ctx_lock:
        if key not in _contexts:
            settings = json.loads(json.dumps(_BASE_SETTINGS))
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
) -> dict:
    """The manifest definition c2pa-python's Builder signs."""
    agent = {"name": generator}
    params: dict[str, Any] = {}
    if family:
        params["family"] = family
    if checkpoint_sha256:
        params["checkpoint_sha256"] = checkpoint_sha256
    actions: list[dict] = [
        {
            "action": "c2pa.created",
            "digitalSourceType": DST_COMPOSITE if edited else DST_TRAINED,
            "softwareAgent": agent,
            **({"parameters": params} if params else {}),
        }
    ]
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
    gen = {"generator": generator, "family": family, "checkpoint_sha256": checkpoint_sha256, "record_id": record_id}
    assertions.append({"label": GENERATOR_ASSERTION, "data": {k: v for k, v in gen.items() if v is not None}})
    return {
        "claim_generator_info": [{"name": "genvis-trust", "version": tool_version}],
        "title": title,
        "assertions": assertions,
    }


def sign_image_bytes(data: bytes, fmt: str, manifest: dict, material: SigningMaterial) -> tuple[bytes, bytes]:
    """Sign ``data`` (an encoded image of format ``fmt``); returns (signed image, manifest bytes)."""
    import c2pa

    mime = MIME.get(fmt.upper())
    if mime is None:
        raise ValueError(f"C2PA signing of {fmt} is not supported here; use JPEG, PNG or WebP")
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
    trust_anchors_configured: bool = False
    error: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def _codes(results: dict | None) -> tuple[list[str], list[str], list[str]]:
    fail, ok, info = [], [], []
    if not results:
        return fail, ok, info
    groups = [results.get("activeManifest") or {}] + list(results.get("ingredientDeltas") or [])
    for g in groups:
        g = g.get("validationDeltas", g) if isinstance(g, dict) else {}
        fail += [c.get("code", "") for c in g.get("failure", [])]
        ok += [c.get("code", "") for c in g.get("success", [])]
        info += [c.get("code", "") for c in g.get("informational", [])]
    return fail, ok, info


def read_c2pa(data: bytes, fmt: str | None = None, trust_anchors_pem: str | None = None) -> C2paInfo:
    """Read and validate the C2PA manifest store in ``data``; never raises for bad input."""
    import c2pa

    info = C2paInfo(trust_anchors_configured=bool(trust_anchors_pem))
    mime = MIME.get((fmt or "").upper())
    try:
        reader = c2pa.Reader.try_create(mime, io.BytesIO(data), None, _context(trust_anchors_pem))
    except c2pa.C2paError as e:
        msg = str(e)
        if "RemoteManifest" in type(e).__name__ or "remote" in msg.lower():
            info.present = True
            info.remote_manifest_not_fetched = True
            info.error = None
            info.remote_url = _remote_url_hint(msg)
            return info
        info.error = f"C2PA data could not be read: {msg[:500]}"
        # a JUMBF box that cannot be parsed still means a manifest was there
        info.present = "jumbf" in msg.lower() or "manifest" in msg.lower() or "claim" in msg.lower()
        return info
    except Exception as e:  # the native layer must never take the scan down
        info.error = f"C2PA reader failed: {type(e).__name__}: {str(e)[:300]}"
        return info
    if reader is None:
        return info
    with reader:
        info.present = True
        try:
            info.embedded = bool(reader.is_embedded())
            info.remote_url = reader.get_remote_url()
            info.state = reader.get_validation_state()
            info.failure_codes, info.success_codes, info.informational_codes = _codes(
                reader.get_validation_results()
            )
            store = json.loads(reader.json())
        except Exception as e:
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


def _remote_url_hint(msg: str) -> str | None:
    for tok in msg.replace('"', " ").split():
        if tok.startswith(("http://", "https://")):
            return tok
    return None
