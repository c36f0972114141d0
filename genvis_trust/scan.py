"""scan: every signal for an image, fused into one verdict with its evidence.

Signals, strongest first:

1. **cryptographic**: a C2PA manifest that validates (Valid/Trusted) and declares a
   generative ``digitalSourceType``;
2. **statistical**: this toolkit's watermark (issuer, generative flag and record, with
   error correction and a p-value) and the provenance-store record it leads to (only a
   mark of the store's own issuer; the record's source type decides); public
   known-generator watermarks (SDXL, SD v1/v2: *consistent with*, never proof); a
   perceptual-hash match, a *near-duplicate of stamped item N* carrying N's source type:
   ``likely_generated`` at most, and only when N was recorded as generated;
3. **declared**: unsigned metadata markers (IPTC/XMP DigitalSourceType, generator
   front-end PNG text, EXIF Software);
4. **learned**: the detector's calibrated probability. An image whose verdict flips under
   mild perturbations (JPEG 90, 0.9x resize, light blur) is ``uncertain``; the check runs
   when the probability lies in ``UNCERTAIN_BAND`` (elsewhere a flip is rare and the extra
   forward passes are not spent).

Verdicts (``ScanResult.verdict``): ``generated``, ``likely_generated``, ``uncertain``,
``no_evidence``, ``error``. The toolkit never states "real": absence of evidence is
``no_evidence``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from genvis_trust.io import DEFAULT_MAX_PIXELS
from genvis_trust.scoring.engine import ScoreRecord, ScoringEngine

SCAN_SCHEMA_VERSION = "1.0"
VERDICTS = ("generated", "likely_generated", "uncertain", "no_evidence", "error")
THRESHOLD = 0.5
UNCERTAIN_BAND = (0.2, 0.8)


@dataclass
class ScanResult:
    """One image's verdict, with every signal's evidence; JSON via :meth:`to_dict`."""

    input: str
    verdict: str
    summary: str  # e.g. "likely generated (detector p=0.97, calibrated)"
    evidence: list[dict[str, Any]] = field(default_factory=list)
    image: dict[str, Any] = field(default_factory=dict)
    detector: dict[str, Any] | None = None
    provenance: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    schema_version: str = SCAN_SCHEMA_VERSION
    video: dict[str, Any] | None = None  # videos only: container facts, frames examined, per-frame rows

    def to_dict(self, full: bool = False) -> dict[str, Any]:
        d = {
            "schema_version": self.schema_version,
            "input": self.input,
            "verdict": self.verdict,
            "summary": self.summary,
            "evidence": self.evidence,
            "image": self.image,
            "detector": self.detector,
            "error": self.error,
        }
        if self.video is not None:
            d["video"] = self.video
        if full:
            d["provenance"] = self.provenance
        return d


def _ev(kind: str, strength: str, summary: str, indicates: str, details: dict | None = None) -> dict:
    return {"kind": kind, "strength": strength, "summary": summary, "indicates": indicates, "details": details or {}}


def fuse(record: ScoreRecord, stability: dict | None = None, local: dict | None = None) -> ScanResult:
    """One verdict from the provenance report (``record.extra``) and the detector score.
    ``local``: the strongest region and the faces (``{"region", "faces"}``, see
    :mod:`genvis_trust.regions`); one that stands out makes an otherwise ``no_evidence``
    image ``likely_generated``."""
    if record.error is not None:
        return _fuse_without_pixels(record)
    prov = record.extra
    evidence: list[dict] = []
    image = dict(record.image)
    if prov is not None:
        pd = prov.to_dict() if hasattr(prov, "to_dict") else dict(prov)
        evidence += pd.get("evidence", [])
        image["sha256"] = pd.get("input", {}).get("sha256")
        if pd.get("error"):
            evidence.append(_ev("provenance", "declared", f"provenance checks failed: {pd['error'].get('message')}", "none"))
    else:
        pd = None
    det = record.score.to_dict() if record.score is not None else None
    p = record.score.probability if record.score is not None else None
    ood = list(record.score.out_of_domain) if record.score is not None else []
    if record.score is not None:
        cal = "calibrated" if record.score.calibrated else "uncalibrated"
        detail = {k: det[k] for k in ("probability", "calibrated", "detector")}
        text = f"detector {record.score.detector}: p(generated)={p:.2f} ({cal}, {record.score.tiles} tiles)"
        if ood:
            detail["out_of_domain"] = ood
            text += "; outside what it was trained on: " + "; ".join(o["message"] for o in ood)
        evidence.append(_ev("detector", "learned", text, "generated" if p >= THRESHOLD else "none", detail))
        if stability is not None:
            det["stability"] = stability
    local_ev: list[dict] = []
    if local and record.score is not None:
        from genvis_trust.regions import local_evidence

        local_ev, extra = local_evidence(local.get("region"), local.get("faces") or [], p, bool(ood))
        evidence += local_ev
        det.update(extra)
    calibrated = bool(record.score is not None and record.score.calibrated)
    p_used = p
    # Out of domain, a low score means nothing; a high one still counts only for small images of
    # a kind the detector was trained on (the bundled generators' samples).
    if ood and p is not None and (p < THRESHOLD or any(o["code"] != "small" for o in ood)):
        p_used = None
    verdict, summary = _decide(evidence, p_used, stability, calibrated)
    if p_used is None and p is not None and verdict == "no_evidence":
        summary = summary.replace("(no detector score)", f"(detector p={p:.2f} not meaningful here: {ood[0]['message']})")
    standing = next((e for e in local_ev if e["indicates"] == "edited"), None)
    if standing is not None and verdict == "no_evidence" and p_used is not None:
        d = standing["details"]
        what = "one region" if standing["kind"] == "region" else "a face"
        verdict = "likely_generated"
        summary = summary.replace("no evidence of generation (detector",
                                  f"likely generated in {what} (p={d['probability']:.2f} at {d['box']}; whole-image detector")
    return ScanResult(record.input, verdict, summary, evidence, image, det, pd)


def _fuse_without_pixels(record: ScoreRecord) -> ScanResult:
    """A record whose pixels did not decode: the byte signals (C2PA, metadata, exact-bytes
    store match) still speak. Media that are not images (video, audio, PDF) are not an
    error: their pixel signals are simply not run. A damaged image stays an error, with
    its C2PA state beside the decode error."""
    e = record.error
    err_summary = f"error: {e.get('message')} [{e.get('code')}]"
    if record.extra is None:
        return ScanResult(record.input, "error", err_summary, error=e, image=record.image)
    pd = record.extra.to_dict() if hasattr(record.extra, "to_dict") else dict(record.extra)
    evidence = list(pd.get("evidence", []))
    facts = pd.get("input", {})
    image = {**record.image, **{k: facts.get(k) for k in ("bytes", "sha256", "media_type")}}
    verdict, summary = _decide(evidence, None, None)
    media = str(facts.get("media_type") or "")
    if e.get("code") == "not_an_image" and media and not media.startswith("image/"):
        image["pixels"] = f"not checked: {media} (pixel signals run on images only)"
        return ScanResult(record.input, verdict, summary.replace("no detector score", f"{media}, pixels not checked"),
                          evidence, image, None, pd)
    if verdict in ("generated", "likely_generated"):
        return ScanResult(record.input, verdict, f"{summary}; pixels: {err_summary}", evidence, image, None, pd, e)
    c2pa = next((x for x in evidence if x["kind"] == "c2pa" and x["indicates"] != "none"), None)
    if c2pa is not None:
        err_summary += f"; {c2pa['summary']}"
    return ScanResult(record.input, "error", err_summary, evidence, image, None, pd, e)


def _decide(evidence: list[dict], p: float | None, stability: dict | None, calibrated: bool = True) -> tuple[str, str]:
    by = {}
    for e in evidence:
        by.setdefault(e["kind"], []).append(e)
    c2pa = next((e for e in by.get("c2pa", []) if e["indicates"] in ("generated", "edited")), None)
    if c2pa is not None:
        state = c2pa["details"].get("validation_state") or c2pa["details"].get("state") or "valid"
        what = "generated" if c2pa["indicates"] == "generated" else "edited with generative AI"
        if str(state).lower() in ("valid", "trusted"):
            return "generated", f"{what} (declared by a {str(state).lower()} C2PA manifest)"
    generative = ("generated", "edited")
    wm = next((e for e in by.get("watermark", []) if e["indicates"] == "generated"), None)
    # a store record found by exact bytes, C2PA or our own issuer's mark says what the content is;
    # a perceptual-hash match is a near-duplicate of a stamped item: weaker than any mark
    stores = by.get("store", [])
    exact = next((e for e in stores if not e["details"].get("derivative")), None)
    derivative = next((e for e in stores if e["details"].get("derivative")), None)
    if exact is not None and exact["indicates"] in generative:
        d = exact["details"]
        return "generated", f"generated (provenance record {d.get('record_id')} via {d.get('path')}, {d.get('source_type')})"
    if wm is not None:
        return "generated", "generated (" + wm["summary"].split(":")[0] + ")"
    known = next((e for e in by.get("known_generator", []) if e["indicates"] == "generated"), None)
    if known is not None:
        return "likely_generated", "likely generated (" + known["summary"].split(";")[0] + ")"
    if derivative is not None and derivative["indicates"] in generative:
        return "likely_generated", "likely generated (" + derivative["summary"].split(":")[0] + "; no mark found)"
    meta = next((e for e in by.get("metadata", []) if e["indicates"] == "generated"), None)
    if meta is not None:
        return "likely_generated", f"likely generated (declared in unsigned metadata: {meta['summary']})"
    tampered = next((e for e in by.get("c2pa", []) if e["indicates"] == "tampered"), None)
    prefix = "C2PA manifest invalid; " if tampered is not None else ""
    stamped = next((e for e in [exact, derivative] if e is not None and e["indicates"] not in generative), None)
    if stamped is not None:
        d = stamped["details"]
        what = "near-duplicate of stamped item" if d.get("derivative") else "stamped item"
        prefix += f"{what} {d.get('record_id')} recorded as {d.get('source_type')}; "
    if p is None:
        return "no_evidence", prefix + "no evidence of generation (no detector score)"
    if stability is not None and stability.get("uncertain"):
        return "uncertain", prefix + f"uncertain (detector p={p:.2f} flips under mild perturbation)"
    if p >= THRESHOLD:
        cal = "calibrated" if calibrated else "uncalibrated"
        return "likely_generated", prefix + f"likely generated (detector p={p:.2f}, {cal})"
    return "no_evidence", prefix + f"no evidence of generation (detector p={p:.2f})"


class Scanner:
    """Scan many inputs: decode once per image in worker threads, provenance checks there
    too, detector tiles batched across images; results in input order.

    >>> import numpy as np, tempfile, os
    >>> from genvis_trust.detectors import Detector
    >>> from genvis_trust.io import encode_image
    >>> d = tempfile.mkdtemp(); f = os.path.join(d, "a.png")
    >>> open(f, "wb").write(encode_image(np.zeros((64, 64, 3), np.uint8))) > 0
    True
    >>> [r.verdict in VERDICTS for r in Scanner(Detector.create("cnn", device="cpu")).scan([f, "/nope.png"])]
    [True, True]
    """

    def __init__(
        self,
        detector="default",
        *,
        device: str = "auto",
        provenance: bool = True,
        store: str | os.PathLike | None = None,
        trust_anchors: str | os.PathLike | None = None,
        watermark_backends: tuple[str, ...] | None = None,
        batch_size: int | None = None,
        workers: int | None = None,
        check_stability: bool = True,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        fetch_remote: bool = False,
        video=None,
        faces: bool = True,
    ):
        """``max_pixels``: larger images become ``too_large`` error records (the service lowers it).
        ``fetch_remote``: fetch remote C2PA manifests (default: reported with their URL).
        ``video``: a :class:`~genvis_trust.video.VideoOptions` (frames sampled, limits).
        ``faces``: find faces and score each on denser tiles (:mod:`genvis_trust.faces`)."""
        from genvis_trust.video import VideoLimits, VideoOptions

        self.video_options = video or VideoOptions(limits=VideoLimits(max_pixels=max_pixels))
        self.provenance = provenance
        self.check_stability = check_stability
        self.faces = faces
        self._verify_kwargs: dict[str, Any] = {}
        self._store = None
        if provenance:
            from genvis_trust.provenance.store import ProvenanceStore

            if trust_anchors is not None:
                self._verify_kwargs["trust_anchors_pem"] = Path(trust_anchors).read_text()
            if fetch_remote:
                self._verify_kwargs["fetch_remote"] = True
            if watermark_backends is not None:
                self._verify_kwargs["backends"] = tuple(watermark_backends)
            if store is not None:
                self._store = ProvenanceStore(store)
                self._verify_kwargs["store"] = self._store
        self.engine = ScoringEngine(
            detector, device=device, batch_size=batch_size, workers=workers, max_pixels=max_pixels,
            hook=self._hook if provenance else None, keep_images=check_stability or faces,
        )
        self.detector = self.engine.detector

    def _hook(self, data, loaded, name, error=None):
        from genvis_trust.provenance.verify import verify_bytes

        if data is None:
            return None
        return verify_bytes(data, name=name, decoded=loaded, decode_error=error, **self._verify_kwargs)

    def scan(self, inputs: Iterable[Any], names: Iterable[str] | None = None) -> Iterator[ScanResult]:
        """One result per input, in input order; videos (sniffed from their bytes) get one
        record each from sampled frames (:mod:`genvis_trust.video`)."""
        from genvis_trust.video import scan_with_videos

        yield from scan_with_videos(self, inputs, names, self._scan_images)

    def _scan_images(self, inputs: Iterable[Any], names: Iterable[str] | None = None) -> Iterator[ScanResult]:
        t0 = time.time()
        for rec in self.engine.score_paths(inputs, names):
            stab = None
            if (
                self.check_stability
                and rec.score is not None
                and UNCERTAIN_BAND[0] <= rec.score.probability <= UNCERTAIN_BAND[1]
                and rec.loaded is not None
            ):
                stab = self._stability(rec)
            res = fuse(rec, stab, self._local(rec))
            res.image["elapsed_s"] = round(time.time() - t0, 3)
            t0 = time.time()
            yield res

    def _local(self, rec: ScoreRecord) -> dict | None:
        """The strongest region (from the tiles already scored) and the faces (scored apart)."""
        if rec.score is None:
            return None
        from genvis_trust.regions import strongest_region

        faces = []
        if self.faces and rec.loaded is not None:
            from genvis_trust.faces import score_faces

            faces = score_faces(self.detector, rec.loaded.array, rec.score)
        return {"region": strongest_region(self.detector, rec.score), "faces": faces}

    def _stability(self, rec: ScoreRecord) -> dict:
        from genvis_trust.detectors.evaluation import stability

        v = stability(self.detector, rec.loaded.array, threshold=THRESHOLD, score=rec.score.probability)
        return {"perturbed": {k: round(x, 4) for k, x in v.perturbed.items()}, "uncertain": v.uncertain, "spread": round(v.spread, 4)}

    def close(self) -> None:
        if self._store is not None:
            self._store.close()


def scan(paths: Iterable[str | os.PathLike], **kwargs) -> list[ScanResult]:
    """Convenience: scan paths and return all results."""
    s = Scanner(**kwargs)
    try:
        return list(s.scan([str(p) for p in paths]))
    finally:
        s.close()
