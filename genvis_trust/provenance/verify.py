"""Verify provenance: every signal for one input (an image, a video, audio, a PDF), as a typed, JSON-ready report.

Signals, each an :class:`Evidence` with a strength:

- ``cryptographic``: the C2PA manifest (Invalid / Valid / Trusted, raw status codes);
- ``statistical``: our watermark (payload with a stated false-accept rate and p-value) and
  known generators' watermarks (SDXL, SD v1/v2: *consistent with*, never proof);
- ``declared``: metadata markers (IPTC DigitalSourceType, EXIF, PNG text of front-ends,
  AI-service claim generators);
- the provenance-store record, found through C2PA, the exact sha256, the watermark
  payload (only when the payload's issuer is the store's) or the perceptual hash
  (``store.path`` says which). A perceptual-hash match is a *near-duplicate of stamped
  item N* and carries N's recorded source type: it says what the record says the content
  is, and it is weaker than a mark (``details.derivative``).

The bytes come first: C2PA and metadata are read from every input, whatever its format
(video, audio, PDF: every format c2pa-python reads), and then the pixel signals run
where there are pixels. A file whose pixels cannot be decoded keeps its C2PA report
beside the decode error (a flipped byte in a stamped PNG: ``corrupt`` *and* C2PA Invalid
with ``assertion.dataHash.mismatch``).

Default watermark backends: :data:`DEFAULT_VERIFY_BACKENDS` = ``dwtDctSvd`` and
``dwtDct`` (vectorised readers). They and the known generators' marks read one
:class:`~.watermarks.SharedTransforms` of the pixels, so the watermark transform is
computed once per channel order (``benchmarks/watermark_transform.py``); ``rivaGan``
costs over a second per image on CPU (measured in ``docs/provenance.md``), so it is read
only when asked (``backends=("all",)``) or when the image's C2PA soft binding or its store
record names it.

A failure (unreadable file, native library error) is the report's ``error`` field, never
an exception out of :func:`verify_bytes`.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from genvis_trust.evidence import Evidence, StoreMatch
from genvis_trust.io import (
    DEFAULT_MAX_BYTES,
    ImageLoadError,
    LoadedImage,
    decode_image,
    sha256_bytes,
    sha256_file,
    sniff_media_type,
)
from genvis_trust.media import MediaItem, SampledVideo, VideoOptions, open_media, video_facts

from .c2pa_manifest import C2paInfo, read_c2pa, source_type_indicates
from .known_generators import check_known_marks
from .metadata import MetadataSignals, c2pa_service_markers, read_metadata
from .payload import CODECS
from .phash import phash
from .store import DEFAULT_PHASH_THRESHOLD, ProvenanceStore
from .watermarks import (
    DEFAULT_BACKEND,
    BitReading,
    SharedTransforms,
    WatermarkDetection,
    detect_shared,
    detection_from_reading,
    get_watermark,
    list_watermarks,
    shared_readings,
)

__all__ = [
    "DEFAULT_VERIFY_BACKENDS",
    "REPORT_SCHEMA_VERSION",
    "VIDEO_STEP_OF",
    "Evidence",
    "InputFacts",
    "ProvenanceReport",
    "add_frame_evidence",
    "add_store",
    "container_report",
    "frame_reports",
    "frame_store_evidence",
    "pool_watermarks",
    "store_evidence",
    "verify_bytes",
    "verify_frame",
    "verify_large_file",
    "verify_media",
    "verify_paths",
    "verify_video",
    "video_backends",
    "watermark_evidence",
]

REPORT_SCHEMA_VERSION = "1.1"  # 1.1: input.media_type, c2pa.status, store issuer and derivative fields
DEFAULT_VERIFY_BACKENDS = ("dwtDctSvd", "dwtDct")


@dataclass
class InputFacts:
    """What was read of the input itself. In JSON (``to_dict``) the media type and the facts that
    apply: a file has bytes and a digest, a decoded image its format and size, a frame its size."""

    bytes: int | None = None
    sha256: str | None = None
    media_type: str | None = None  # sniffed from the content, never from the name
    format: str | None = None  # the decoder's name for it (PNG, JPEG, ...)
    width: int | None = None
    height: int | None = None
    conversions: list[str] | None = None  # what decoding did to reach 8-bit RGB
    pixels: str | None = None  # how the pixels were read, or why not
    video: dict | None = None  # a video's container facts and the frames examined

    def to_dict(self) -> dict:
        # nothing read (an unreadable path): {}; else media_type always (null: content not
        # recognised) and the other facts where they apply
        d = asdict(self)
        if all(v is None for v in d.values()):
            return {}
        return {k: v for k, v in d.items() if v is not None or k == "media_type"}


@dataclass
class ProvenanceReport:
    schema_version: str
    path: str
    input: InputFacts = field(default_factory=InputFacts)
    c2pa: C2paInfo | None = None  # None: not read (a frame, an unreadable file); JSON {}
    watermarks: list[dict] = field(default_factory=list)
    known_generators: list[dict] = field(default_factory=list)
    metadata: MetadataSignals | None = None  # None: not read; JSON {}
    store: dict | None = None
    evidence: list[Evidence] = field(default_factory=list)
    error: dict | None = None

    def to_dict(self) -> dict:
        d = asdict(self)
        d["input"] = self.input.to_dict()
        d["c2pa"] = self.c2pa.to_dict() if self.c2pa is not None else {}
        d["metadata"] = self.metadata.to_dict() if self.metadata is not None else {}
        d["evidence"] = [e.to_dict() for e in self.evidence]
        return d

    @property
    def has_provenance(self) -> bool:
        return any(e.indicates != "none" for e in self.evidence)


# --------------------------------------------------------------------------- helpers


def _c2pa_evidence(info: dict) -> Evidence:
    status = info.get("status")
    if status == "remote" and info.get("error"):
        return Evidence("c2pa", "cryptographic", f"C2PA manifest is remote ({info.get('remote_url')}); {info['error']}",
                        "none", {"status": status, "remote_url": info.get("remote_url"), "error": info["error"]})
    if status == "remote":
        return Evidence("c2pa", "cryptographic",
                        f"C2PA manifest is remote ({info.get('remote_url')}); not fetched (pass --fetch-remote to fetch it)",
                        "none", {"status": status, "remote_url": info.get("remote_url")})
    if status == "unsupported":
        return Evidence("c2pa", "cryptographic", f"C2PA manifest present but unsupported: {info.get('error')}",
                        "none", {"status": status, "error": info.get("error")})
    if info.get("error"):
        if info.get("present"):
            return Evidence("c2pa", "cryptographic", "C2PA data present but unreadable", "tampered",
                            {"status": status, "error": info["error"]})
        return Evidence("c2pa", "cryptographic", f"C2PA could not read this file ({info['error'][:200]})", "none",
                        {"status": status, "error": info["error"]})
    if not info.get("present"):
        what = ("no C2PA manifest" if status == "none"
                else f"C2PA not checked: c2pa-python does not read {info.get('media_type') or 'this file type'}")
        return Evidence("c2pa", "cryptographic", what, "none", {"status": status})
    state = info.get("state") or "Invalid"
    dsts = info.get("digital_source_types") or []
    what = next((source_type_indicates(d) for d in dsts if source_type_indicates(d) != "none"), "authentic_provenance")
    if state == "Invalid":
        what = "tampered"
    summary = f"C2PA manifest {state}"
    if info.get("claim_generator"):
        summary += f", claim generator {info['claim_generator']}"
    if dsts:
        summary += f", digitalSourceType {dsts[0].rsplit('/', 1)[-1]}"
    fails = [c for c in info.get("failure_codes", []) if c != "signingCredential.untrusted"]
    if state == "Invalid" and not fails:
        fails = [f"ingredient {c}" for c in info.get("ingredient_failure_codes", []) if c != "signingCredential.untrusted"]
    if fails:
        summary += f" ({', '.join(fails[:3])})"
    return Evidence("c2pa", "cryptographic", summary, what,
                    {k: info.get(k) for k in ("status", "state", "failure_codes", "ingredient_failure_codes", "signer",
                                              "active_manifest", "trust_anchors_configured")}, c2pa_state=state)


def _find_record(store: ProvenanceStore, c2pa: dict, digest: str, ph: str | None,
                 dets: list[WatermarkDetection]) -> dict:
    """Find the store record: C2PA record id, exact sha256, watermark payload (own issuer
    only), pHash near-duplicate. Records are returned as dicts with their source type."""
    gen = c2pa.get("generator_assertion") or {}
    # a manifest's record id is local to the store that issued it, like a watermark's
    mine = f"{store.issuer_id(CODECS['p64'].issuer_bits):#x}"
    if c2pa.get("state") in ("Valid", "Trusted") and isinstance(gen.get("record_id"), int) \
            and gen.get("issuer_id") == mine:
        rec = store.get(gen["record_id"])
        if rec:
            return {"found": True, "path": "c2pa", "record": rec.to_dict()}
    rows = store.by_sha256(digest) if digest else []
    if rows:
        return {"found": True, "path": "sha256", "record": rows[0].to_dict()}
    foreign = None
    for d in dets:
        if not d.detected:
            continue
        hit = store.resolve_payload(d.payload, d.backend, ph)
        if hit["found"]:
            r = hit.pop("record")
            return {"found": True, "path": "watermark", "backend": d.backend, "record": r.to_dict(), **hit}
        foreign = foreign or {"found": False, "path": "watermark", "backend": d.backend, **hit}
    if ph:
        near = store.nearest_phash(ph, DEFAULT_PHASH_THRESHOLD)
        if near:
            rec, dist = near
            return {"found": True, "path": "perceptual_hash", "derivative": True, "record": rec.to_dict(),
                    "phash_distance": dist, **({"watermark": foreign} if foreign else {}),
                    "note": f"near-duplicate of stamped item {rec.id} (perceptual hash within "
                            f"{DEFAULT_PHASH_THRESHOLD} bits): a look-alike, not a mark"}
    return foreign or {"found": False, "path": None}


def store_evidence(found: dict) -> Evidence:
    """The evidence of a store record found (``found``: what :func:`add_store` put in ``report.store``)."""
    rec = found["record"]
    st = rec.get("source_type") or "trainedAlgorithmicMedia"  # schema-1 records were all generated
    indicates = source_type_indicates(st)
    who = f", generator {rec.get('generator')}" if rec.get("generator") and indicates != "authentic_provenance" else ""
    if found["path"] == "perceptual_hash":
        summary = (f"near-duplicate of stamped item {rec['id']} ({st}{who}), pHash distance "
                   f"{found.get('phash_distance')}: a look-alike, not a mark")
        strength = "statistical"
    else:
        summary = f"provenance record {rec['id']} found via {found['path']} ({st}{who})"
        strength = "statistical" if found["path"] == "watermark" else "cryptographic"
    return Evidence("store", strength, summary, indicates,
                    store=StoreMatch(rec["id"], found["path"], st, found.get("phash_distance")))


def watermark_evidence(d: WatermarkDetection, store_hit: dict | None) -> Evidence:
    """The evidence of our watermark decoded (``store_hit``: the store's answer, which says
    whether the mark's issuer is this store's)."""
    pl = d.payload
    rate = f"{d.matched_bits}/{d.n_bits} bits, false-accept rate {pl['false_accept_rate']:.1e}"
    details = {"backend": d.backend, "p_value": d.p_value, "payload": pl}
    if pl.get("version", 1) < 2:
        return Evidence("watermark", "statistical",
                        f"genvis-trust watermark ({d.backend}), legacy v1 payload, record {pl['record_id']}: "
                        f"no issuer named, {rate}", "generated", details)
    issuer = f"{pl['issuer_id']:#x}"
    details["issuer_id"] = issuer
    what = "generative content" if pl.get("generative") else "content stamped as not generated"
    hit = store_hit or {}
    if hit.get("foreign") or (hit.get("watermark") or {}).get("foreign"):  # the latter beside a pHash match
        head = f"genvis-trust watermark from issuer {issuer}, not in this store"
    else:
        head = f"genvis-trust watermark ({d.backend}) from issuer {issuer}, record {pl['record_id']}"
    return Evidence("watermark", "statistical", f"{head}: {what}, {rate}",
                    "generated" if pl.get("generative") else "authentic_provenance", details)


def _backends_for(requested: tuple[str, ...], c2pa: dict) -> list[str]:
    # "all": the default backend first, then by name (the order reports list readings in)
    names = sorted(list_watermarks(), key=lambda n: n != DEFAULT_BACKEND) if "all" in requested else list(requested)
    for sb in c2pa.get("soft_bindings") or []:
        alg = str(sb.get("alg", ""))
        for n in list_watermarks():
            if f".{n}." in alg and n not in names:
                names.append(n)
    return names


# --------------------------------------------------------------------------- public API


def verify_bytes(
    data: bytes,
    *,
    name: str = "<bytes>",
    trust_anchors_pem: str | None = None,
    store: ProvenanceStore | None = None,
    backends: tuple[str, ...] = DEFAULT_VERIFY_BACKENDS,
    known_generators: bool = True,
    decoded: LoadedImage | None = None,
    decode_error: ImageLoadError | None = None,
    fetch_remote: bool = False,
) -> ProvenanceReport:
    """Every provenance signal of one file. ``decoded``: the pixels of ``data`` when the
    caller already decoded them (scan does), so they are not decoded twice;
    ``decode_error``: the caller's decoding already failed (the byte signals still run).
    ``fetch_remote``: fetch remote C2PA manifests (off: they are reported with their URL)."""
    rep = ProvenanceReport(REPORT_SCHEMA_VERSION, name)
    digest = sha256_bytes(data)
    media_type = sniff_media_type(data)
    rep.input = InputFacts(bytes=len(data), sha256=digest, media_type=media_type)

    rep.c2pa = read_c2pa(data, media_type, trust_anchors_pem, fetch_remote=fetch_remote)
    info = rep.c2pa.to_dict()
    rep.evidence.append(_c2pa_evidence(info))

    meta = read_metadata(data)
    meta.markers += c2pa_service_markers(info.get("claim_generator"), info.get("actions") or [])
    rep.metadata = meta
    if meta.markers:
        rep.evidence.append(Evidence("metadata", "declared",
                                     "; ".join(sorted({m.indicates for m in meta.markers})),
                                     "generated", {"markers": [m.to_dict() for m in meta.markers]}))
    else:
        rep.evidence.append(Evidence("metadata", "declared", "no generator markers in metadata", "none",
                                     {"errors": meta.errors} if meta.errors else {}))

    img = decoded
    if img is None and decode_error is None:
        try:
            img = decode_image(data, path=name)
        except ImageLoadError as e:
            decode_error = e
    if img is None:
        # no pixels: the byte signals above stand; the store can still match exact bytes or C2PA
        rep.error = decode_error.to_dict() if decode_error is not None else None
        rep.input.pixels = "not decoded" + (f": {decode_error.message}" if decode_error else "")
        if store is not None:
            add_store(rep, store, info, digest, None, [])
        return rep
    rep.input.format, rep.input.width, rep.input.height = img.format, img.width, img.height
    rep.input.conversions = list(img.conversions)
    return _pixel_signals(rep, img.array, info, digest, store=store, backends=backends,
                          known_generators=known_generators)


def verify_frame(rgb, *, name: str = "<frame>", store: ProvenanceStore | None = None,
                 backends: tuple[str, ...] = DEFAULT_VERIFY_BACKENDS, known_generators: bool = True,
                 shared: SharedTransforms | None = None, **_) -> ProvenanceReport:
    """The pixel signals of one video frame (watermarks, known generators' marks, the store's
    watermark and perceptual-hash paths): a frame has no bytes, C2PA or metadata of its own.
    ``shared``: the frame's transforms, when the caller wants the readings kept there
    (:func:`~.watermarks.shared_readings`)."""
    rep = ProvenanceReport(REPORT_SCHEMA_VERSION, name)
    rep.input = InputFacts(width=int(rgb.shape[1]), height=int(rgb.shape[0]), media_type="video frame")
    return _pixel_signals(rep, rgb, {}, None, store=store, backends=backends, known_generators=known_generators,
                          shared=shared)


def _pixel_signals(rep: ProvenanceReport, rgb, info: dict, digest: str | None, *, store: ProvenanceStore | None,
                   backends: tuple[str, ...], known_generators: bool,
                   shared: SharedTransforms | None = None) -> ProvenanceReport:
    """The signals read from pixels, added to ``rep`` (``digest`` None: no bytes to match)."""

    # one set of transforms for every reader of these pixels: the colour conversion and
    # wavelet transform run once per channel order, whatever the number of readers
    shared = shared if shared is not None else SharedTransforms([rgb])
    dets: list[WatermarkDetection] = []
    for be in _backends_for(tuple(backends), info):
        try:
            dets.append(detect_shared(shared, be)[0])
        except Exception as e:  # a broken backend (e.g. onnxruntime missing) is reported
            dets.append(WatermarkDetection(be, False, 0, "", 0.0, {}, None, None, error=f"{type(e).__name__}: {e}"))
    rep.watermarks = [d.to_dict() for d in dets]

    if known_generators:
        if min(rgb.shape[:2]) >= 256:
            res = check_known_marks([rgb], shared=shared)[0]
            rep.known_generators = [r.to_dict() for r in res]
            for r in res:
                if r.consistent:
                    rep.evidence.append(Evidence(
                        "known_generator", "statistical",
                        f"consistent with the {r.generator} invisible watermark ({r.matched_bits}/{r.n_bits} bits, "
                        f"{r.grade}); public mark, anyone can embed it: not proof",
                        "generated", r.to_dict()))
        else:
            rep.known_generators = [{"error": "image below 256x256: known-generator marks not read"}]

    if store is not None:
        try:
            ph = phash(rgb)
        except Exception as e:
            ph = None
            rep.store = {"found": False, "error": f"{type(e).__name__}: {e}"}
        add_store(rep, store, info, digest, ph, dets)

    hits = [d for d in dets if d.detected]
    if hits:
        rep.evidence.insert(2, watermark_evidence(hits[0], rep.store))
    else:
        errs = [d.error for d in dets if d.error]
        rep.evidence.insert(2, Evidence("watermark", "statistical",
                                        "no genvis-trust watermark" + (f" ({errs[0]})" if errs else ""),
                                        "none", {"backends": [d.backend for d in dets]}))
    return rep


def add_store(rep: ProvenanceReport, store: ProvenanceStore, info: dict, digest: str, ph: str | None,
               dets: list[WatermarkDetection]) -> None:
    """Look the input up in ``store`` (C2PA record, sha256, watermark payload, perceptual hash)
    and add the record's evidence to ``rep`` when one is found."""
    try:
        rep.store = _find_record(store, info, digest, ph, dets)
    except Exception as e:
        rep.store = {"found": False, "error": f"{type(e).__name__}: {e}"}
    if rep.store.get("found"):
        rep.evidence.append(store_evidence(rep.store))


def verify_paths(paths: list[str | os.PathLike], *, max_bytes: int = DEFAULT_MAX_BYTES, video=None,
                 **kwargs) -> list[ProvenanceReport]:
    """:func:`verify_media` for files; an unreadable file is a report with ``error``. A file
    over the byte limit (a long video) still gets its C2PA read, streamed from disk. A video
    also gets its sampled frames' pixel signals (``video``: its
    :class:`~genvis_trust.media.VideoOptions`; ``max_bytes``: the limit of other files)."""
    options = video or VideoOptions(max_bytes=max_bytes)
    return [verify_media(open_media(p, name=str(Path(p)), options=options, max_bytes=max_bytes), **kwargs)[0]
            for p in paths]


def verify_large_file(rep: ProvenanceReport, path: Path, *, trust_anchors_pem: str | None = None,
                      store: ProvenanceStore | None = None, fetch_remote: bool = False, **_) -> None:
    """C2PA (and the store's sha256 / C2PA record) of a file too big to load; metadata and
    pixel signals need the bytes in memory and are not run."""
    with open(path, "rb") as f:
        media_type = sniff_media_type(f.read(4096))
        f.seek(0)
        c2pa = read_c2pa(f, media_type, trust_anchors_pem, fetch_remote=fetch_remote)
    info = c2pa.to_dict()
    digest = sha256_file(path)
    rep.input = InputFacts(bytes=path.stat().st_size, sha256=digest, media_type=media_type,
                           pixels="not decoded: file over the byte limit; C2PA read from disk, metadata not read")
    rep.c2pa = c2pa
    rep.evidence.append(_c2pa_evidence(info))
    if store is not None:
        add_store(rep, store, info, digest, None, [])


# --------------------------------------------------------------------------- any medium


def verify_media(item: MediaItem, *, workers: int = 1, **kwargs) -> tuple[ProvenanceReport, list[ProvenanceReport]]:
    """Every provenance signal of one :class:`~genvis_trust.media.MediaItem`, and (a video)
    its frames' own reports. The container's bytes give C2PA, metadata and the store's
    sha256 / C2PA-record paths (streamed from disk over the byte limit); pixels give the
    rest: an image's, or a video's sampled frames pooled (:func:`add_frame_evidence`).
    ``workers``: threads reading a video's frames; ``kwargs``: :func:`verify_bytes`'s."""
    if item.is_video:
        return _verify_video_item(item, workers, kwargs)
    if item.data is None:
        e = item.read_error
        rep = ProvenanceReport(REPORT_SCHEMA_VERSION, item.name, error=e.to_dict())
        if e.code == "too_large" and item.path is not None:
            verify_large_file(rep, item.path, **kwargs)
        return rep, []
    return verify_bytes(item.data, name=item.name, decoded=item.image, decode_error=item.error, **kwargs), []


# --------------------------------------------------------------------------- video: frames pooled
#
# C2PA and metadata on the container, every image signal on the sampled frames, one
# whole-video report with per-frame evidence and timestamps:
# - each sampled frame goes through the per-image pixel signals (:func:`verify_frame`);
# - our watermark is read from the frames' soft scores averaged (per bit, the share of its
#   blocks voting 1, over every examined frame), then thresholded and decoded once (a mark too
#   damaged to decode in any one frame can still decode pooled); ``dwtDctSvd`` is read at its
#   video step too (``dwtDctSvdVideo``, what ``stamp`` writes into a video);
# - a known generator's mark counts only when a majority of frames carry it, and a store
#   record may be found through a frame.
# A video that cannot be sampled is an error record that keeps its container evidence, like
# an image whose pixels do not decode.

#: the backends a video's frames are read with: what was asked, plus ``dwtDctSvdVideo``
#: (the step ``stamp`` writes into videos) wherever ``dwtDctSvd`` is asked for
VIDEO_STEP_OF = {"dwtDctSvd": "dwtDctSvdVideo"}


def video_backends(requested: Iterable[str]) -> tuple[str, ...]:
    """The watermark backends read on a video's frames for ``requested``: each decode is one
    more chance of a false payload (6.7e-7 per 64-bit backend), so the video step is added
    only beside the image backend it belongs to."""
    out: list[str] = []
    for name in requested:
        video = VIDEO_STEP_OF.get(name)
        if video and video not in requested and video not in out:
            out.append(video)
        if name not in out:
            out.append(name)
    return tuple(out)


def container_report(item: MediaItem, verify_kwargs: dict) -> ProvenanceReport:
    """A video container's report: C2PA, metadata and the store's byte paths, no pixels yet."""
    name = item.name
    not_pixels = ImageLoadError("not_an_image", "a video: its pixels are read from sampled frames", name)
    if item.data is not None:
        rep = verify_bytes(item.data, name=name, decode_error=not_pixels, **verify_kwargs)
    else:
        e = item.read_error
        rep = ProvenanceReport(REPORT_SCHEMA_VERSION, name, error=e.to_dict())
        if e.code != "too_large":
            return rep
        verify_large_file(rep, Path(item.path), **verify_kwargs)
    rep.error = None
    big = rep.input.pixels  # a file over the byte limit says how its bytes were read
    rep.input.pixels = "sampled video frames" + (f" ({big.removeprefix('not decoded: ')})" if big else "")
    return rep


def pool_watermarks(frame_reports: list[ProvenanceReport], frame_readings: list[dict]) -> list:
    """One detection per backend from the frames' soft scores averaged (soft pooling: a bit
    that most frames read weakly right is not outvoted by a few frames that read it
    strongly wrong, as a majority of hard bits would let it be). Returns ``(detection,
    frames read, frames that decode it alone)`` per backend."""
    by_backend: dict[str, list] = {}
    detected: Counter = Counter()
    for rep, readings in zip(frame_reports, frame_readings, strict=True):
        for w in rep.watermarks:
            reading = readings.get(w["backend"])
            if reading is not None and not w.get("error"):
                by_backend.setdefault(w["backend"], []).append(reading)
                detected[w["backend"]] += bool(w["detected"])
    out = []
    for backend, reads in by_backend.items():
        be = get_watermark(backend)
        soft = np.mean([r.soft for r in reads], axis=0)
        bits = (soft > be.soft_threshold).astype(np.uint8)
        reading = BitReading(bits=bits, soft=soft, confidence=float(np.mean(np.abs(2 * (soft - be.soft_threshold)))))
        det = detection_from_reading(be, reading)
        det.notes.append(f"soft scores of {len(reads)} frame reading(s) averaged, decoded once")
        out.append((det, len(reads), detected[backend]))
    return out


def add_frame_evidence(rep: ProvenanceReport, frame_reports: list[ProvenanceReport], frame_readings: list[dict],
                       times: list[float], store) -> None:
    """Add the frames' pooled pixel evidence to the container report ``rep``."""
    n = len(frame_reports)
    pooled = pool_watermarks(frame_reports, frame_readings)
    rep.watermarks = [{**d.to_dict(), "frames_read": k, "frames_detected": hits} for d, k, hits in pooled]
    dets = [d for d, _, _ in pooled if d.detected]
    if store is not None and not (rep.store or {}).get("found"):
        add_store(rep, store, rep.c2pa.to_dict() if rep.c2pa is not None else {}, None, None, dets)
        if not (rep.store or {}).get("found"):  # a frame's near-duplicate of a stamped item
            hits = [(r.store, t) for r, t in zip(frame_reports, times, strict=True) if (r.store or {}).get("found")]
            if hits:
                ids = Counter(h["record"]["id"] for h, _ in hits)
                best, k = ids.most_common(1)[0]
                found, t = next((h, t) for h, t in hits if h["record"]["id"] == best)
                rep.store = {**found, "frames": k, "first_time_s": t}
                rep.evidence.append(frame_store_evidence(rep.store, k, n))
    if dets:
        d, k, hits = next(p for p in pooled if p[0].detected)
        ev = watermark_evidence(d, rep.store)
        ev.summary += f" (pooled over {k} frames; {hits} frame(s) decode it alone)"
        ev.details.update(frames_read=k, frames_detected=hits)
    else:
        ev = Evidence("watermark", "statistical", f"no genvis-trust watermark in {n} frame(s), alone or pooled", "none",
                      {"backends": [d.backend for d, _, _ in pooled]})
    rep.evidence.insert(min(2, len(rep.evidence)), ev)
    known: dict[str, list[float]] = {}
    for r, t in zip(frame_reports, times, strict=True):
        for e in r.evidence:
            if e.kind == "known_generator" and e.indicates == "generated":
                known.setdefault(e.details.get("generator", e.summary), []).append(t)
    for gen, ts in known.items():
        major = 2 * len(ts) >= n
        rep.evidence.append(Evidence(
            "known_generator", "statistical",
            f"consistent with the {gen} invisible watermark in {len(ts)} of {n} frames (first at {ts[0]:.2f} s); "
            "public mark, anyone can embed it: not proof" + ("" if major else "; a minority of frames: not counted"),
            "generated" if major else "none", {"generator": gen, "frames": len(ts), "of": n, "times_s": ts}))


def frame_store_evidence(found: dict, k: int, n: int) -> Evidence:
    """A store record found through ``k`` of a video's ``n`` frames."""
    ev = store_evidence(found)
    ev.summary += f" (in {k} of {n} frames, first at {found['first_time_s']:.2f} s)"
    ev.details.update(frames=k, of=n)
    return ev


def frame_reports(frames, name: str, verify_kwargs: dict, workers: int) -> tuple[list[ProvenanceReport], list[dict]]:
    """Each frame's report, and each frame's readings by backend (the soft scores the pooling
    averages, kept from the frame's own reading: nothing is read twice)."""
    kwargs = {**verify_kwargs, "backends": video_backends(verify_kwargs.get("backends", DEFAULT_VERIFY_BACKENDS))}

    def one(f):
        shared = SharedTransforms([f.array])
        rep = verify_frame(f.array, name=f"{name}@{f.time_s:.3f}s", shared=shared, **kwargs)
        readings = {w["backend"]: shared_readings(shared, get_watermark(w["backend"]))[0]
                    for w in rep.watermarks if not w.get("error")}
        return rep, readings

    if workers <= 1 or len(frames) < 2:
        pairs = [one(f) for f in frames]
    else:
        with ThreadPoolExecutor(workers, thread_name_prefix="frames") as pool:
            pairs = list(pool.map(one, frames))
    return [p[0] for p in pairs], [p[1] for p in pairs]


def _verify_video_item(item: MediaItem, workers: int, verify_kwargs: dict) -> tuple[ProvenanceReport, list]:
    rep = container_report(item, verify_kwargs)
    if rep.error is not None:
        return rep, []
    if item.video is None:
        e = item.error
        rep.error = e.to_dict()
        rep.input.pixels = f"not decoded: {e.message}"
        return rep, []
    sampled = item.video
    reports, readings = frame_reports(sampled.frames, item.name, verify_kwargs, workers)
    add_frame_evidence(rep, reports, readings, [f.time_s for f in sampled.frames], verify_kwargs.get("store"))
    rep.input.video = video_facts(sampled)
    return rep, reports


def verify_video(source, *, name: str | None = None, options: VideoOptions = VideoOptions(), workers: int = 1,
                 sampled: SampledVideo | None = None, **verify_kwargs):
    """Every provenance signal of a video (a path or bytes), as one :class:`ProvenanceReport`:
    the container's C2PA, metadata and store record, and the sampled frames' marks pooled
    (``input.video`` names the frames). A video that cannot be sampled keeps its container
    report, with ``error`` set. Returns ``(report, frame reports, sampled video or None)``."""
    name = name or (str(source) if isinstance(source, (str, os.PathLike)) else "<video>")
    item = open_media(source, name=name, options=options, video=True, sampled=sampled)
    rep, reports = verify_media(item, workers=workers, **verify_kwargs)
    return rep, reports, (item.video if rep.error is None else None)
