"""Metadata markers of generated images: declared, so easy to strip and to forge.

Read from the raw bytes with bounded parsers (no full decode): PNG text chunks, JPEG
APP1 (EXIF, XMP) and COM segments, WebP ``EXIF``/``XMP `` chunks. What is looked for:

- IPTC / XMP ``DigitalSourceType`` (``trainedAlgorithmicMedia``,
  ``compositeWithTrainedAlgorithmicMedia``, ``algorithmicMedia``);
- names of AI services, as whole words, in the fields a generator or editor writes: EXIF
  ``Software``, XMP ``CreatorTool``, ``Credit`` and the history's ``softwareAgent``, PNG
  ``Software``/``Source``/``Generator`` text (never in ``Make``/``Model``/lens fields, which are
  read only to recognise camera firmware naming its own camera);
- A1111 generation parameters in EXIF ``UserComment``;
- PNG text written by generator front-ends: AUTOMATIC1111 / Forge ``parameters``, ComfyUI
  ``prompt`` / ``workflow``, InvokeAI ``invokeai_metadata`` / ``sd-metadata`` / ``Dream``,
  NovelAI (``Software: NovelAI``), Fooocus;
- C2PA claim generators and software agents of major AI services (from the C2PA reader).

Hostile inputs: chunk lengths are checked against the file, text is capped at
:data:`MAX_TEXT` bytes, zTXt/iTXt decompression is capped, XMP is parsed with defusedxml
(entity declarations refused). Every problem becomes an entry of ``errors``; nothing raises.

>>> from genvis_trust.io import encode_image
>>> import numpy as np
>>> read_metadata(encode_image(np.zeros((4, 4, 3), np.uint8), "PNG")).markers
[]
"""

from __future__ import annotations

import json
import re
import struct
import zlib
from dataclasses import asdict, dataclass, field

__all__ = ["AI_SERVICE_PATTERNS", "MetadataMarker", "MetadataSignals", "read_metadata", "c2pa_service_markers"]

MAX_TEXT = 1 << 20  # 1 MiB per text value / XMP packet
MAX_CHUNKS = 10_000

AI_DST = {
    "trainedAlgorithmicMedia": "declared AI-generated (IPTC trainedAlgorithmicMedia)",
    "compositeWithTrainedAlgorithmicMedia": "declared AI-edited composite (IPTC compositeWithTrainedAlgorithmicMedia)",
    "algorithmicMedia": "declared algorithmic media (IPTC algorithmicMedia)",
    "compositeSynthetic": "declared synthetic composite (IPTC compositeSynthetic)",
}

#: name patterns of AI image services and tools, matched case-insensitively as whole words
#: (letters and digits on either side break a match; ``_`` and punctuation do not) and only in
#: the fields a generator or an editor writes: EXIF Software, XMP CreatorTool / Credit and the
#: history's softwareAgent, PNG Software / Source / Generator text, C2PA claim generators and
#: software agents. Never in Make / Model / lens fields: cameras are named after anything
#: (a 2003 "Trust Gemini11"), so a name that is also the camera's make or model is not a marker.
AI_SERVICE_PATTERNS = {
    "Adobe Firefly": r"firefly",
    "OpenAI (DALL-E / ChatGPT / Sora)": r"dall[\s\-·]?e(?:[\s\-]?[23])?|openai|chatgpt|sora|gpt-4o|gpt-image-1",
    "Microsoft (Designer / Bing Image Creator / Azure OpenAI)": r"bing image creator|microsoft designer|azure openai|microsoft responsible ai",
    "Google (Imagen / Gemini)": r"google imagen|imagen ?[1-4]|gemini|google ai|synthid",
    "Meta AI": r"meta ai|imagine with meta",
    "Midjourney": r"midjourney",
    "Stability AI / Stable Diffusion": r"stable ?diffusion|stability ai|dreamstudio|sdxl",
    "NovelAI": r"novelai",
    "Leonardo.Ai": r"leonardo\.?ai",
    "Ideogram": r"ideogram",
    "Runway": r"runwayml|runway gen(?:[\s\-]?[1-4])?",
    "Black Forest Labs (FLUX)": r"black forest labs|flux(?:\.1|[\s\-]1\.1)?[\s\-](?:pro|dev|schnell|kontext|ultra)|flux\.1",
}
_AI_RE = [(name, re.compile(rf"(?<![a-z0-9])(?:{p})(?![a-z0-9])", re.I)) for name, p in AI_SERVICE_PATTERNS.items()]

#: PNG text keys whose value names the program that wrote the file (matched against the
#: service names; the front-end keys below are markers by their presence and shape).
_PNG_TOOL_KEYS = ("software", "source", "generator")

_FRONTEND_KEYS = {
    "parameters": "AUTOMATIC1111 / Forge generation parameters",
    "prompt": "ComfyUI prompt graph",
    "workflow": "ComfyUI workflow",
    "invokeai_metadata": "InvokeAI metadata",
    "sd-metadata": "InvokeAI (legacy) metadata",
    "dream": "InvokeAI 'Dream' command",
    "fooocus_scheme": "Fooocus metadata",
}


@dataclass
class MetadataMarker:
    kind: str  # iptc_digital_source_type | xmp_creator_tool | exif_software | png_text | exif_user_comment | c2pa_claim_generator | ...
    key: str
    value: str  # excerpt, at most 200 characters
    indicates: str  # what the marker claims

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class MetadataSignals:
    markers: list[MetadataMarker] = field(default_factory=list)
    fields: dict[str, str] = field(default_factory=dict)  # everything read (excerpts)
    errors: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"markers": [m.to_dict() for m in self.markers], "fields": self.fields, "errors": self.errors}


def _excerpt(s: str, n: int = 200) -> str:
    s = s.replace("\x00", " ").strip()
    return s if len(s) <= n else s[: n - 1] + "…"


def _decode_text(b: bytes) -> str:
    for enc in ("utf-8", "latin-1"):
        try:
            return b.decode(enc)
        except UnicodeDecodeError:
            continue
    return ""


def _inflate(data: bytes, errors: list[str], what: str) -> bytes:
    d = zlib.decompressobj()
    try:
        out = d.decompress(data, MAX_TEXT)
    except zlib.error as e:
        errors.append(f"{what}: bad compressed text ({e})")
        return b""
    if d.unconsumed_tail:
        errors.append(f"{what}: compressed text larger than {MAX_TEXT} bytes, truncated")
    return out


# --------------------------------------------------------------------------- containers


def _png_texts(data: bytes, errors: list[str]) -> tuple[dict[str, str], bytes | None]:
    texts: dict[str, str] = {}
    xmp = None
    pos, n = 8, 0
    while pos + 8 <= len(data) and n < MAX_CHUNKS:
        n += 1
        length, ctype = struct.unpack(">I4s", data[pos : pos + 8])
        if pos + 12 + length > len(data):
            errors.append(f"PNG chunk {ctype!r} at {pos} claims {length} bytes past the end of the file")
            break
        body = data[pos + 8 : pos + 8 + length]
        pos += 12 + length
        if ctype == b"IEND":
            break
        if ctype not in (b"tEXt", b"zTXt", b"iTXt"):
            continue
        try:
            key, _, rest = body.partition(b"\x00")
            k = _decode_text(key)
            if ctype == b"tEXt":
                val = rest[:MAX_TEXT]
            elif ctype == b"zTXt":
                val = _inflate(rest[1:], errors, f"zTXt {k}")
            else:
                flag, _method = rest[0], rest[1]
                rest = rest[2:]
                _lang, _, rest = rest.partition(b"\x00")
                _tkey, _, rest = rest.partition(b"\x00")
                val = _inflate(rest, errors, f"iTXt {k}") if flag else rest[:MAX_TEXT]
            if k == "XML:com.adobe.xmp":
                xmp = val
            else:
                texts[k] = _decode_text(val)
        except (IndexError, ValueError) as e:
            errors.append(f"PNG {ctype.decode(errors='replace')} chunk malformed ({e})")
    return texts, xmp


def _jpeg_segments(data: bytes, errors: list[str]) -> tuple[bytes | None, bytes | None, list[str]]:
    exif = xmp = None
    comments: list[str] = []
    pos, n = 2, 0
    while pos + 4 <= len(data) and n < MAX_CHUNKS:
        n += 1
        if data[pos] != 0xFF:
            errors.append(f"JPEG marker expected at {pos}")
            break
        marker = data[pos + 1]
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            pos += 2
            continue
        if marker in (0xDA, 0xD9):  # start of scan / end: metadata lives before
            break
        (length,) = struct.unpack(">H", data[pos + 2 : pos + 4])
        if length < 2 or pos + 2 + length > len(data):
            errors.append(f"JPEG segment 0x{marker:02X} at {pos} has a bad length {length}")
            break
        body = data[pos + 4 : pos + 2 + length]
        if marker == 0xE1 and body.startswith(b"Exif\x00\x00") and exif is None:
            exif = body[6:]
        elif marker == 0xE1 and body.startswith(b"http://ns.adobe.com/xap/1.0/\x00"):
            xmp = body[29:]
        elif marker == 0xFE:
            comments.append(_decode_text(body[:MAX_TEXT]))
        pos += 2 + length
    return exif, xmp, comments


def _webp_chunks(data: bytes, errors: list[str]) -> tuple[bytes | None, bytes | None]:
    exif = xmp = None
    pos, n = 12, 0
    while pos + 8 <= len(data) and n < MAX_CHUNKS:
        n += 1
        ctype, length = data[pos : pos + 4], struct.unpack("<I", data[pos + 4 : pos + 8])[0]
        if pos + 8 + length > len(data):
            errors.append(f"WebP chunk {ctype!r} at {pos} claims {length} bytes past the end of the file")
            break
        body = data[pos + 8 : pos + 8 + length]
        if ctype == b"EXIF":
            exif = body[6:] if body.startswith(b"Exif\x00\x00") else body
        elif ctype == b"XMP ":
            xmp = body
        pos += 8 + length + (length & 1)
    return exif, xmp


# --------------------------------------------------------------------------- EXIF / XMP


def _exif_fields(exif: bytes, errors: list[str]) -> dict[str, str]:
    from PIL import Image

    out: dict[str, str] = {}
    try:
        ex = Image.Exif()
        ex.load(exif[: 4 * MAX_TEXT])
        for tag, name in ((0x0131, "Software"), (0x010E, "ImageDescription"), (0x013B, "Artist"),
                          (0x010F, "Make"), (0x0110, "Model")):
            if tag in ex:
                out[name] = _excerpt(str(ex[tag]), 2000)
        sub = ex.get_ifd(0x8769)
        if 0xA434 in sub:
            out["LensModel"] = _excerpt(str(sub[0xA434]), 2000)
        if 0x9286 in sub:
            raw = sub[0x9286]
            if isinstance(raw, bytes):
                head, body = raw[:8], raw[8:]
                if head.startswith(b"UNICODE"):
                    txt = body.decode("utf-16-be", errors="replace")
                    if txt and txt[0] not in "\x00" and "\x00" in txt[:4]:
                        txt = body.decode("utf-16-le", errors="replace")
                else:
                    txt = _decode_text(body if head.startswith((b"ASCII", b"\x00" * 8)) else raw)
            else:
                txt = str(raw)
            out["UserComment"] = _excerpt(txt, 4000)
    except Exception as e:  # PIL raises many types on hostile EXIF
        errors.append(f"EXIF unreadable ({type(e).__name__}: {_excerpt(str(e), 120)})")
    return out


def _xmp_fields(xmp: bytes, errors: list[str]) -> dict[str, str]:
    from defusedxml import ElementTree as DET
    from defusedxml.common import DefusedXmlException

    out: dict[str, str] = {}
    if len(xmp) > MAX_TEXT:
        errors.append(f"XMP packet of {len(xmp)} bytes exceeds {MAX_TEXT}; not parsed")
        return out
    text = xmp.strip(b"\x00 \t\r\n")
    try:
        root = DET.fromstring(text, forbid_dtd=True)
    except DefusedXmlException as e:
        errors.append(f"XMP refused: {type(e).__name__} (DTD/entity declarations are not allowed)")
        return out
    except Exception as e:
        errors.append(f"XMP malformed ({type(e).__name__}: {_excerpt(str(e), 120)})")
        return out
    agents: list[str] = []  # xmpMM:History's stEvt:softwareAgent, one per editing step
    for el in root.iter():
        tag = el.tag.split("}")[-1] if isinstance(el.tag, str) else ""
        for k, v in el.attrib.items():
            kk = k.split("}")[-1]
            if kk in _XMP_KEYS and v:
                out.setdefault(kk, v)
            elif kk == "softwareAgent" and v and v not in agents:
                agents.append(v)
        text = (el.text or "").strip()
        if tag in _XMP_KEYS and text:
            out.setdefault(tag, text)
        elif tag == "softwareAgent" and text and text not in agents:
            agents.append(text)
    if agents:
        out["History.softwareAgent"] = "; ".join(agents[:50])
    return out


_XMP_KEYS = ("DigitalSourceType", "CreatorTool", "Credit", "Make", "Model", "LensModel")


# --------------------------------------------------------------------------- markers


def _service(text: str, camera: frozenset[str] = frozenset()) -> str | None:
    """The AI service ``text`` names as a whole word, unless the name is the camera's own
    (``camera``: the words of its make and model; camera firmware writes Software too)."""
    for name, rx in _AI_RE:
        for hit in rx.finditer(text):
            if not set(_WORD.findall(hit.group(0).lower())) <= camera:
                return name
    return None


_WORD = re.compile(r"[a-z0-9]+")
# "Made with Google AI", "Edited with Google AI" (Google's generators write this Credit line)
_CREDIT_RE = re.compile(r"\b(?:made|edited|created|generated)\s+(?:with|by|using)\s+[^;,/|]{1,60}", re.I)


def _camera_words(exif_f: dict[str, str], xmp_f: dict[str, str]) -> frozenset[str]:
    return frozenset(w for f in (exif_f, xmp_f) for k in ("Make", "Model", "LensModel")
                     for w in _WORD.findall(f.get(k, "").lower()))


def read_metadata(data: bytes) -> MetadataSignals:
    """Markers of AI generation declared in the file's metadata."""
    sig = MetadataSignals()
    errors = sig.errors
    try:
        texts: dict[str, str] = {}
        exif = xmp = None
        comments: list[str] = []
        if data.startswith(b"\x89PNG\r\n\x1a\n"):
            texts, xmp = _png_texts(data, errors)
            # eXIf chunk
            i = data.find(b"eXIf")
            if i >= 4:
                (ln,) = struct.unpack(">I", data[i - 4 : i])
                exif = data[i + 4 : i + 4 + min(ln, 4 * MAX_TEXT)]
        elif data.startswith(b"\xff\xd8"):
            exif, xmp, comments = _jpeg_segments(data, errors)
        elif data[:4] == b"RIFF" and data[8:12] == b"WEBP":
            exif, xmp = _webp_chunks(data, errors)
        exif_f = _exif_fields(exif, errors) if exif else {}
        xmp_f = _xmp_fields(xmp, errors) if xmp else {}
    except Exception as e:  # last line of defence: a marker reader never crashes a scan
        errors.append(f"metadata unreadable ({type(e).__name__}: {_excerpt(str(e), 120)})")
        return sig
    for k, v in texts.items():
        sig.fields[f"png:{k}"] = _excerpt(v)
    for k, v in exif_f.items():
        sig.fields[f"exif:{k}"] = _excerpt(v)
    for k, v in xmp_f.items():
        sig.fields[f"xmp:{k}"] = _excerpt(v)
    for c in comments:
        sig.fields.setdefault("jpeg:comment", _excerpt(c))

    m = sig.markers
    dst = xmp_f.get("DigitalSourceType", "")
    for key, what in AI_DST.items():
        if dst.rstrip("/").endswith("/" + key) or dst == key:
            m.append(MetadataMarker("iptc_digital_source_type", "xmp:DigitalSourceType", _excerpt(dst), what))
    for key, what in _FRONTEND_KEYS.items():
        for tk, tv in texts.items():
            if tk.lower() == key and _frontend_plausible(key, tv):
                m.append(MetadataMarker("png_text", f"png:{tk}", _excerpt(tv), what))
    uc = exif_f.get("UserComment", "")
    if "Steps:" in uc and ("Sampler:" in uc or "CFG scale:" in uc):
        m.append(MetadataMarker("exif_user_comment", "exif:UserComment", _excerpt(uc), "AUTOMATIC1111 / Forge generation parameters"))
    camera = _camera_words(exif_f, xmp_f)
    tool_fields = [
        ("exif_software", "exif:Software", exif_f.get("Software", "")),
        ("xmp_creator_tool", "xmp:CreatorTool", xmp_f.get("CreatorTool", "")),
        ("xmp_history", "xmp:History.softwareAgent", xmp_f.get("History.softwareAgent", "")),
        ("xmp_credit", "xmp:Credit", xmp_f.get("Credit", "")),
    ] + [("png_text", f"png:{k}", v) for k, v in texts.items() if k.lower() in _PNG_TOOL_KEYS]
    for kind, key, val in tool_fields:
        if kind == "xmp_credit":  # a person's credit line too: only a tool's "made with X" counts
            val = " ".join(mm.group(0) for mm in _CREDIT_RE.finditer(val))
        svc = _service(val, camera) if val else None
        if svc:
            m.append(MetadataMarker(kind, key, _excerpt(val), f"names an AI image service or tool: {svc}"))
    return sig


def _frontend_plausible(key: str, value: str) -> bool:
    v = value.strip()
    if key == "parameters":
        return "Steps:" in v or v.startswith("{")  # A1111 text or Fooocus JSON
    if key in ("prompt", "workflow"):
        try:
            return isinstance(json.loads(v[:MAX_TEXT]), (dict, list))
        except ValueError:
            return False
    return bool(v)


def c2pa_service_markers(claim_generator: str | None, actions: list[dict]) -> list[MetadataMarker]:
    """Markers for C2PA claim generators / software agents naming AI services."""
    out = []
    names = [("c2pa:claim_generator", claim_generator or "")]
    for a in actions:
        agent = a.get("softwareAgent")
        if isinstance(agent, dict):
            agent = agent.get("name", "")
        if agent:
            names.append(("c2pa:softwareAgent", str(agent)))
    seen = set()
    for key, val in names:
        svc = _service(val)
        if svc and (key, svc) not in seen:
            seen.add((key, svc))
            out.append(MetadataMarker("c2pa_claim_generator", key, _excerpt(val), f"C2PA manifest by an AI service: {svc}"))
    return out

