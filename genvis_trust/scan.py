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
   forward passes are not spent) and only where its answer can change the verdict: not when
   stronger evidence (C2PA, a mark, a store record, metadata) decides it, nor when the score is
   out of the detector's domain and not used (:func:`stability_skip_reason`). It stops at the
   first copy that flips. The record says when and why it was skipped (``stability.skipped``).

Verdicts (``ScanResult.verdict``): ``generated``, ``likely_generated``, ``uncertain``,
``no_evidence``, ``error``; a folder walk adds ``skipped`` for files that are not media
(:mod:`genvis_trust.triage`). The toolkit never states "real": absence of evidence is
``no_evidence``.

Flags (``ScanResult.flags``, schema 1.1) stand beside the verdict: ``tampered`` when a C2PA
manifest is present but invalid (a hash mismatch, a bad signature, unreadable C2PA data),
or signed by a certificate outside the trust anchors that were given.
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from genvis_trust.detectors.detector import counting_threshold, score_counts
from genvis_trust.evidence import Evidence
from genvis_trust.io import DEFAULT_MAX_PIXELS
from genvis_trust.scoring.engine import ScoreRecord, ScoringEngine

if TYPE_CHECKING:
    from genvis_trust.detectors.detector import DetectionScore
    from genvis_trust.detectors.evaluation import StabilityVerdict
    from genvis_trust.provenance.verify import ProvenanceReport

# 1.1: "flags" (tampered), the "skipped" verdict and its reason; 1.2: the stability check's
# "tiles" read per copy and "estimated", a small out_of_domain entry's "counts_above"
SCAN_SCHEMA_VERSION = "1.2"
VERDICTS = ("generated", "likely_generated", "uncertain", "no_evidence", "error", "skipped")
FLAGS = ("tampered",)
THRESHOLD = 0.5
UNCERTAIN_BAND = (0.2, 0.8)


@dataclass
class ScanResult:
    """One image's verdict, with every signal's evidence; JSON via :meth:`to_dict`."""

    input: str
    verdict: str
    summary: str  # e.g. "likely generated (detector p=0.97, calibrated)"
    evidence: list[Evidence] = field(default_factory=list)
    image: dict[str, Any] = field(default_factory=dict)  # input facts: size, format, bytes, sha256, timing
    score: DetectionScore | None = None
    stability: StabilityVerdict | None = None  # run only near the threshold
    provenance: ProvenanceReport | None = None
    error: dict[str, Any] | None = None  # {"code", "message", "path"}
    schema_version: str = SCAN_SCHEMA_VERSION
    video: dict[str, Any] | None = None  # videos only: container facts, frames examined, per-frame rows
    local: dict[str, Any] | None = None  # the strongest region and the faces, written under "detector"
    skipped: dict[str, Any] | None = None  # verdict "skipped": {"code", "message"} (not media)
    stability_skipped: str | None = None  # why the stability check did not run (written under "detector")

    def __post_init__(self):
        if self.flags:  # the headline says it, in text, JSON and the reports alike
            self.summary = flagged_summary(self.summary, self.flags)

    @property
    def flags(self) -> list[str]:
        """Headline flags beside the verdict (:data:`FLAGS`), from the evidence."""
        return tampered_flags(self.evidence)

    @property
    def detector(self) -> dict[str, Any] | None:
        """The detector's part of the JSON record: its score, and the stability check when it ran."""
        if self.score is None:
            return None
        d = self.score.to_dict()
        if self.stability is not None:
            v = self.stability
            d["stability"] = {"perturbed": {k: round(x, 4) for k, x in v.perturbed.items()},
                              "uncertain": v.uncertain, "spread": round(v.spread, 4)}
            if v.tiles:  # the sequential check: how much of each copy was read
                d["stability"]["tiles"] = {k: {"read": used, "of": n} for k, (used, n) in v.tiles.items()}
                if v.estimated:
                    d["stability"]["estimated"] = ("a copy's p is estimated from the tiles read: scoring stopped "
                                                   "once its side of the threshold was clear (4 standard errors)")
            if v.not_scored:
                d["stability"]["not_scored"] = {"copies": list(v.not_scored),
                                                "why": "an earlier copy already flipped the verdict"}
        elif self.stability_skipped is not None:
            d["stability"] = {"skipped": self.stability_skipped}
        if self.local:
            d.update(self.local)
        return d

    def to_dict(self, full: bool = False) -> dict[str, Any]:
        d = {
            "schema_version": self.schema_version,
            "input": self.input,
            "verdict": self.verdict,
            "flags": self.flags,
            "summary": self.summary,
            "evidence": [e.to_dict() for e in self.evidence],
            "image": self.image,
            "detector": self.detector,
            "error": self.error,
        }
        if self.video is not None:
            d["video"] = self.video
        if self.skipped is not None:
            d["skipped"] = self.skipped
        if full:
            d["provenance"] = self.provenance.to_dict() if self.provenance is not None else None
        return d


def tampered_flags(evidence: list[Evidence]) -> list[str]:
    """``["tampered"]`` when a C2PA manifest is present but does not validate (or was signed
    outside the trust anchors given), else ``[]``."""
    for e in evidence:
        if e.kind != "c2pa":
            continue
        if e.indicates == "tampered":
            return ["tampered"]
        d = e.details or {}
        if d.get("trust_anchors_configured") and "signingCredential.untrusted" in (d.get("failure_codes") or []):
            return ["tampered"]
    return []


def flagged_summary(summary: str, flags: list[str]) -> str:
    """The verdict line with its flags in front: ``TAMPERED (C2PA manifest invalid); ...``."""
    if "tampered" in flags and not summary.startswith("TAMPERED"):
        return "TAMPERED (C2PA manifest present but invalid); " + summary.replace("C2PA manifest invalid; ", "")
    return summary


def fuse(record: ScoreRecord, stability: StabilityVerdict | None = None, local: dict | None = None,
         sensitivity: dict | None = None) -> ScanResult:
    """One verdict from the provenance report (``record.provenance``) and the detector score.
    ``local``: the strongest region and the faces (``{"region", "faces"}``, see
    :mod:`genvis_trust.regions`); one that stands out makes an otherwise ``no_evidence``
    image ``likely_generated``."""
    if record.error is not None:
        return _fuse_without_pixels(record)
    prov = record.provenance
    evidence: list[Evidence] = []
    image = dict(record.image)
    if prov is not None:
        evidence += prov.evidence
        image["sha256"] = prov.input.sha256
        if prov.error:
            evidence.append(Evidence("provenance", "declared", f"provenance checks failed: {prov.error.get('message')}"))
    score = record.score
    p = score.probability if score is not None else None
    ood = list(score.out_of_domain) if score is not None else []
    # Out of domain, a low score means nothing; a high one still counts only for small images of
    # a kind the detector was evaluated on (the bundled generators' 32x32 samples), above the
    # p its card allows there
    counts = p is not None and (not ood or score_counts(ood, p, THRESHOLD))
    if score is not None:
        cal = "calibrated" if score.calibrated else "uncalibrated"
        detail = {"probability": round(p, 6), "calibrated": score.calibrated, "detector": score.detector}
        fused = bool(score.members) and score.aggregation == "fused_member_logits"  # a fusion (detectors/fusion.py)
        read = f"{len(score.members)} members" if fused else f"{score.tiles} tiles"
        text = f"detector {score.detector}: p(generated)={p:.2f} ({cal}, {read})"
        if score.members:  # a fusion's (or a stack's) members: each one's own p and licence
            detail["members"] = score.members
        if fused:  # ... which a fusion also says in its line, briefly (the licence up to its first remark)
            text += "; members: " + ", ".join(f"{os.path.basename(m['name']) or m['name']} p={m['probability']:.2f} "
                                              f"({m['licence'].split(' (')[0]})" for m in score.members)
        if ood:
            detail["out_of_domain"] = ood
            text += "; outside what it was trained on: " + "; ".join(o["message"] for o in ood)
        if score.head:  # e.g. an up-scaled-looking input, decided by the head fitted on such inputs
            detail["head"] = score.head
            text += "; " + next(n for n in score.notes if n.startswith("decided by the detector's"))
        elif not ood and p < THRESHOLD and sensitivity:
            weak = weak_negative_note(sensitivity)
            if weak:
                detail["sensitivity"] = sensitivity
                text += "; " + weak
        if p >= THRESHOLD and not counts:  # reported, but not evidence of anything
            text += "; the score is not used"
        evidence.append(Evidence("detector", "learned", text, "generated" if p >= THRESHOLD and counts else "none", detail))
    local_ev: list[Evidence] = []
    local_extra: dict[str, Any] = {}
    if local and score is not None:
        from genvis_trust.faces import local_evidence

        found, local_extra = local_evidence(local.get("region"), local.get("faces") or [], p, bool(ood) or score.head is not None)
        local_ev = [Evidence.from_dict(e) for e in found]
        evidence += local_ev
    calibrated = bool(score is not None and score.calibrated)
    p_used = p
    if p is not None and not counts:
        p_used = None
    verdict, summary = _decide(evidence, p_used, stability, calibrated)
    if p_used is None and p is not None and verdict == "no_evidence":
        summary = summary.replace("(no detector score)", f"(detector p={p:.2f} not meaningful here: {ood[0]['message']})")
    standing = next((e for e in local_ev if e.indicates == "edited"), None)
    if standing is not None and verdict == "no_evidence" and p_used is not None:
        d = standing.details
        what = "one region" if standing.kind == "region" else "a face"
        verdict = "likely_generated"
        summary = summary.replace("no evidence of generation (detector",
                                  f"likely generated in {what} (p={d['probability']:.2f} at {d['box']}; whole-image detector")
    return ScanResult(record.input, verdict, summary, evidence, image, score, stability if score is not None else None, prov,
                      local=local_extra or None)


def verdict_threshold(out_of_domain: list[dict[str, Any]]) -> float:
    """The p at which the detector's score decides the verdict: :data:`THRESHOLD`, or a small
    image's higher ``counts_above`` where its card names one (what the stability check asks
    a perturbed copy to stay on the same side of).

    >>> verdict_threshold([]), verdict_threshold([{"code": "small", "counts_above": 0.56}])
    (0.5, 0.56)
    """
    t = counting_threshold(out_of_domain, THRESHOLD)
    return THRESHOLD if t is None else t


def stability_skip_reason(record: ScoreRecord, local: dict | None = None, sensitivity: dict | None = None,
                          band: tuple[float, float] | None = UNCERTAIN_BAND) -> str | None:
    """Why the stability check need not run for ``record``, or None when it must.

    Outside ``band`` (a cost rule: far from the threshold a flip is rare). Inside it, the check
    is skipped only where its answer provably cannot change the verdict: :func:`fuse` gives the
    same verdict with an ``uncertain`` answer as with none (stronger evidence decides first, or
    the score is out of the detector's domain and not used). A stable answer never changes a
    verdict (it is the same as no check), so these two are all the cases."""
    from genvis_trust.detectors.evaluation import StabilityVerdict

    score = record.score
    if score is None:
        return "no detector score"
    p = score.probability
    if band is not None and not band[0] <= p <= band[1]:
        return f"p={p:.2f} outside the uncertain band [{band[0]}, {band[1]}]: a flip is rare there (not checked)"
    without = fuse(record, None, local, sensitivity).verdict
    flipped = fuse(record, StabilityVerdict(p, {}, uncertain=True), local, sensitivity).verdict
    if flipped == without:
        why = ("the detector's score is not used for this input's verdict"
               if without == "no_evidence" else "stronger evidence decides it")
        return f"cannot change the verdict ({without}): {why}"
    return None


def tile_map(detector, score: DetectionScore | None) -> dict[str, Any] | None:
    """The calibrated p(generated) of every tile the scan scored, as a ``rows x cols`` grid
    (``null`` where no tile was read) with the tile side; None for a single tile."""
    if score is None or score.tile_logits is None or not score.tile_positions or len(score.tile_positions) < 2:
        return None
    import numpy as np

    p = np.asarray(detector.probabilities(np.asarray(score.tile_logits, np.float32)), float).ravel()
    ys = sorted({y for y, _ in score.tile_positions})
    xs = sorted({x for _, x in score.tile_positions})
    grid: list[list[float | None]] = [[None] * len(xs) for _ in ys]
    for (y, x), v in zip(score.tile_positions, p, strict=True):
        grid[ys.index(y)][xs.index(x)] = round(float(v), 3)
    return {"p": grid, "tile": int(getattr(detector, "patch", 0) or 0), "y": ys, "x": xs}


def weak_negative_note(sensitivity: dict) -> str | None:
    """What a score below the threshold is worth, from the detector card's ``sensitivity`` (the
    share of unseen generators' samples it flagged in its evaluation, beside its false-positive
    rate on photographs); None when the card does not say.

    >>> weak_negative_note({"orig": {"tpr_pooled": 0.035, "real_fpr": 0.042}, "generators": 19})
    'below its threshold, which caught 3.5% of the samples of 19 generators held out of its evaluation (and 4.2% of test photographs): weak evidence either way'
    """
    o = sensitivity.get("orig") or {}
    tpr, fpr = o.get("tpr_pooled"), o.get("real_fpr")
    if tpr is None or fpr is None:
        return None
    n = sensitivity.get("generators")
    gens = f"{n} generators" if n else "generators"
    verdict = "weak evidence either way" if tpr < 0.5 else "some evidence against generation"
    return (f"below its threshold, which caught {tpr:.1%} of the samples of {gens} held out of its evaluation "
            f"(and {fpr:.1%} of test photographs): {verdict}")


def _fuse_without_pixels(record: ScoreRecord) -> ScanResult:
    """A record whose pixels did not decode: the byte signals (C2PA, metadata, exact-bytes
    store match) still speak. Media that are not images (video, audio, PDF) are not an
    error: their pixel signals are simply not run. A damaged image stays an error, with
    its C2PA state beside the decode error."""
    e = record.error
    err_summary = f"error: {e.get('message')} [{e.get('code')}]"
    prov = record.provenance
    if prov is None:
        return ScanResult(record.input, "error", err_summary, error=e, image=record.image)
    evidence = list(prov.evidence)
    facts = prov.input
    image = {**record.image, "bytes": facts.bytes, "sha256": facts.sha256, "media_type": facts.media_type}
    verdict, summary = _decide(evidence, None, None)
    media = str(facts.media_type or "")
    if e.get("code") == "not_an_image" and media and not media.startswith("image/"):
        image["pixels"] = f"not checked: {media} (pixel signals run on images only)"
        return ScanResult(record.input, verdict, summary.replace("no detector score", f"{media}, pixels not checked"),
                          evidence, image, provenance=prov)
    if verdict in ("generated", "likely_generated"):
        return ScanResult(record.input, verdict, f"{summary}; pixels: {err_summary}", evidence, image,
                          provenance=prov, error=e)
    c2pa = next((x for x in evidence if x.kind == "c2pa" and x.found), None)
    if c2pa is not None:
        err_summary += f"; {c2pa.summary}"
    return ScanResult(record.input, "error", err_summary, evidence, image, provenance=prov, error=e)


def _first(evidence: list[Evidence], kind: str, test) -> Evidence | None:
    return next((e for e in evidence if e.kind == kind and test(e)), None)


def _decide(evidence: list[Evidence], p: float | None, stability: StabilityVerdict | None,
            calibrated: bool = True) -> tuple[str, str]:
    c2pa = _first(evidence, "c2pa", lambda e: e.generative)
    if c2pa is not None and c2pa.validated:
        what = "generated" if c2pa.indicates == "generated" else "edited with generative AI"
        return "generated", f"{what} (declared by a {c2pa.c2pa_state.lower()} C2PA manifest)"
    wm = _first(evidence, "watermark", lambda e: e.indicates == "generated")
    # a store record found by exact bytes, C2PA or our own issuer's mark says what the content is;
    # a perceptual-hash match is a near-duplicate of a stamped item: weaker than any mark
    exact = _first(evidence, "store", lambda e: e.store is not None and not e.store.derivative)
    derivative = _first(evidence, "store", lambda e: e.store is not None and e.store.derivative)
    if exact is not None and exact.generative:
        m = exact.store
        return "generated", f"generated (provenance record {m.record_id} via {m.path}, {m.source_type})"
    if wm is not None:
        return "generated", "generated (" + wm.summary.split(":")[0] + ")"
    known = _first(evidence, "known_generator", lambda e: e.indicates == "generated")
    if known is not None:
        return "likely_generated", "likely generated (" + known.summary.split(";")[0] + ")"
    if derivative is not None and derivative.generative:
        return "likely_generated", "likely generated (" + derivative.summary.split(":")[0] + "; no mark found)"
    meta = _first(evidence, "metadata", lambda e: e.indicates == "generated")
    if meta is not None:
        return "likely_generated", f"likely generated (declared in unsigned metadata: {meta.summary})"
    tampered = _first(evidence, "c2pa", lambda e: e.indicates == "tampered")
    prefix = "C2PA manifest invalid; " if tampered is not None else ""
    stamped = next((e for e in [exact, derivative] if e is not None and not e.generative), None)
    if stamped is not None:
        m = stamped.store
        what = "near-duplicate of stamped item" if m.derivative else "stamped item"
        prefix += f"{what} {m.record_id} recorded as {m.source_type}; "
    if p is None:
        return "no_evidence", prefix + "no evidence of generation (no detector score)"
    if stability is not None and stability.uncertain:
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
        exact_stability: bool = False,
    ):
        """``max_pixels``: larger images become ``too_large`` error records (the service lowers it).
        ``fetch_remote``: fetch remote C2PA manifests (default: reported with their URL).
        ``video``: a :class:`~genvis_trust.media.VideoOptions` (frames sampled, limits).
        ``faces``: find faces and score each on denser tiles (:mod:`genvis_trust.faces`).
        ``exact_stability``: the stability check scores every tile of every perturbed copy
        (default: each copy's tiles until its side of the threshold is clear, see
        :func:`~genvis_trust.detectors.evaluation.sequential_copy_score`)."""
        from genvis_trust.media import VideoLimits, VideoOptions

        self.video_options = video or VideoOptions(limits=VideoLimits(max_pixels=max_pixels))
        # called with (result, decoded RGB array) for every image that decoded, before it is yielded
        self.on_decoded: Any = None
        self.provenance = provenance
        self.check_stability = check_stability
        self.exact_stability = exact_stability
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
        # what a below-threshold score is worth on unseen generators (the card says, if measured)
        self.sensitivity = (getattr(self.detector, "card", None) or {}).get("sensitivity")

    def _hook(self, data, loaded, name, error=None):
        # the engine read and decoded this image: it goes to verify as an item with those pixels
        from genvis_trust.media import MediaItem
        from genvis_trust.provenance.verify import verify_media

        if data is None:
            return None
        item = MediaItem(name, data=data, source=data, image=loaded, error=error)
        return verify_media(item, **self._verify_kwargs)[0]

    def scan(self, inputs: Iterable[Any], names: Iterable[str] | None = None) -> Iterator[ScanResult]:
        """One result per input, in input order; videos (sniffed from their bytes) get one
        record each from sampled frames (:func:`scan_video`)."""
        yield from scan_with_videos(self, inputs, names, self._scan_images)

    def _scan_images(self, inputs: Iterable[Any], names: Iterable[str] | None = None) -> Iterator[ScanResult]:
        t0 = time.time()
        for rec in self.engine.score_paths(inputs, names):
            stab, skipped = None, None
            local = self._local(rec)
            if rec.score is not None:
                if not self.check_stability:
                    skipped = "turned off (check_stability=False)"
                elif rec.loaded is None:
                    skipped = "no decoded pixels"
                else:
                    skipped = stability_skip_reason(rec, local, self.sensitivity)
                    if skipped is None:
                        stab = self._stability(rec)
            res = fuse(rec, stab, local, self.sensitivity)
            res.stability_skipped = skipped if stab is None else None
            tiles = tile_map(self.detector, rec.score)
            if tiles is not None:  # the report draws its heat map from these, with no detector pass
                res.local = {**(res.local or {}), "tile_map": tiles}
            if self.on_decoded is not None and rec.loaded is not None:
                self.on_decoded(res, rec.loaded.array)  # e.g. the audit's thumbnails, from these pixels
            res.image["elapsed_s"] = round(time.time() - t0, 3)
            t0 = time.time()
            yield res

    def _local(self, rec: ScoreRecord) -> dict | None:
        """The strongest region (from the tiles already scored) and the faces (scored apart)."""
        if rec.score is None:
            return None
        from genvis_trust.regions import strongest_region

        faces = []
        if self.faces and rec.loaded is not None and getattr(self.detector, "whole_image", False):
            # a published detector reads the whole image its authors' way: there are no tiles to
            # compare a face with, and a face crop through its preprocessing is not what it was tested on
            rec.score.notes.append("faces and regions not scored apart: this detector reads whole images "
                                   "(its publication's preprocessing), not tiles")
        elif self.faces and rec.loaded is not None:
            from genvis_trust.faces import score_faces

            faces = score_faces(self.detector, rec.loaded.array, rec.score, batch_size=self.engine.batch_size)
        return {"region": strongest_region(self.detector, rec.score), "faces": faces}

    def _stability(self, rec: ScoreRecord) -> StabilityVerdict:
        from genvis_trust.detectors.evaluation import stability

        # the engine's batch size: the network has run that shape already (a new one costs ~0.1 s
        # of first-call set-up on CPU; the logits are the same)
        # sequential: each copy's tiles are read until its side of the threshold is clear
        # (``exact_stability``: every tile of every copy, as before)
        thr = verdict_threshold(rec.score.out_of_domain)
        if self.exact_stability:
            return stability(self.detector, rec.loaded.array, threshold=thr, score=rec.score.probability,
                             batch_size=self.engine.batch_size, stop_at_flip=True)
        return stability(self.detector, rec.loaded.array, threshold=thr, base=rec.score,
                         batch_size=self.engine.batch_size)

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


# --------------------------------------------------------------------------- video: frames into one verdict
#
# A video is one record: its provenance report (C2PA and metadata on the container, the
# frames' marks pooled: :func:`~genvis_trust.provenance.verify.verify_media`), the detector on
# each sampled frame through the scanner's batched engine, each frame's own verdict from
# :func:`fuse`, and the whole-video verdict from :func:`fuse` again, on the container's
# evidence plus the frames' pooled evidence and the frames' logits averaged (as tiles are
# within an image).

#: pixel-signal evidence a frame contributes (the container holds C2PA and metadata)
FRAME_KINDS = ("watermark", "known_generator", "store")


def scan_video(scanner: Scanner, source, name: str, options=None) -> ScanResult:
    """One :class:`ScanResult` for a video (a path or bytes), through ``scanner``'s detector,
    provenance settings and fusion."""
    from genvis_trust.media import open_media, video_facts

    options = options or scanner.video_options
    item = open_media(source, name=name, options=options, video=True, container=scanner.provenance)
    if scanner.provenance:
        from genvis_trust.provenance.verify import verify_media

        rep, frame_reports = verify_media(item, workers=scanner.engine.workers, **scanner._verify_kwargs)
        err = rep.error
    else:
        rep, frame_reports = None, []
        err = item.error.to_dict() if item.video is None else None
    if err is not None:
        res = _fuse_without_pixels(ScoreRecord(name, None, {}, err, None, rep))
        res.image.setdefault("media_type", (rep.input.media_type if rep else None) or "video")
        return res
    sampled = item.video
    frames = sampled.frames
    recs = list(scanner.engine.score_paths([f.array for f in frames], names=[f"{name}@{f.time_s:.3f}s" for f in frames]))
    per_frame = []
    for f, r, fr in zip(frames, recs, frame_reports or [None] * len(frames), strict=True):
        r.provenance = fr
        per_frame.append((f, r, fuse(r)))
    agg = pool_frame_scores(scanner.detector, [r for _, r, _ in per_frame])
    facts = {**video_facts(sampled)}
    image = {"format": f"{sampled.info.container}/{sampled.info.codec}", "width": sampled.info.width,
             "height": sampled.info.height, "bytes": (rep.input.bytes if rep else None),
             "media_type": (rep.input.media_type if rep else None), "conversions": [], "notes": sampled.notes}
    stab, stab_frame, skipped = None, None, None
    pooled = ScoreRecord(name, agg, image, None, None, rep)
    sens = getattr(scanner, "sensitivity", None)
    if agg is not None:
        skipped = (stability_skip_reason(pooled, None, sens) if scanner.check_stability
                   else "turned off (check_stability=False)")
        if skipped is None:
            closest = min((r for _, r, _ in per_frame if r.score is not None and r.loaded is not None),
                          key=lambda r: abs(r.score.probability - agg.probability), default=None)
            if closest is not None:
                stab = scanner._stability(closest)
                stab_frame = closest.input
            else:
                skipped = "no decoded frame kept"
    res = fuse(pooled, stab, sensitivity=sens)
    res.stability_skipped = skipped if stab is None else None
    facts["frames"] = [frame_row(f, r, fres) for f, r, fres in per_frame]
    if stab_frame is not None:
        facts["stability_frame"] = stab_frame  # the frame the stability check perturbed
    res.video = facts
    span = f"{sampled.info.duration_s:.1f} s" if sampled.info.duration_s is not None else f"{sampled.decoded} frames"
    res.summary += f" [{len(frames)} frames examined of {span}]"
    return res


def pool_frame_scores(detector, recs: list[ScoreRecord]) -> DetectionScore | None:
    """The detector's video score: the mean of the frames' logits (each itself a mean over
    tiles). Outside the detector's domain when most frames are."""
    import numpy as np

    from genvis_trust.detectors.detector import DetectionScore

    scored = [r.score for r in recs if r.score is not None]
    if not scored:
        return None
    z = float(np.mean([s.logit for s in scored]))
    oods = [s.out_of_domain for s in scored if s.out_of_domain]
    ood = oods[0] if 2 * len(oods) > len(scored) else []
    return DetectionScore(probability=float(detector.probabilities(np.array([z]))[0]), logit=z,
                          calibrated=detector.calibrated, detector=detector.name, tiles=sum(s.tiles for s in scored),
                          grid=(len(scored), 1), aggregation=f"mean frame logit ({len(scored)} frames)",
                          notes=[f"{sum(s.probability >= 0.5 for s in scored)} of {len(scored)} frames score p >= 0.5"],
                          out_of_domain=ood)


def frame_row(frame, rec: ScoreRecord, res: ScanResult) -> dict[str, Any]:
    """One examined frame as the video record's ``frames[]`` lists it."""
    return {
        "index": frame.index, "time_s": frame.time_s, "reason": frame.reason, "cut_score": frame.cut_score,
        "verdict": res.verdict,
        "probability": None if rec.score is None else round(rec.score.probability, 6),
        "out_of_domain": bool(rec.score is not None and rec.score.out_of_domain),
        "evidence": [{"kind": e.kind, "indicates": e.indicates, "summary": e.summary}
                     for e in res.evidence if e.indicates != "none" and e.kind in FRAME_KINDS + ("detector",)],
        "error": res.error,
    }


def scan_with_videos(scanner: Scanner, inputs: Iterable[Any], names: Iterable[str] | None,
                     scan_images: Callable[[Iterable[Any], Iterable[str]], Iterator]) -> Iterator[ScanResult]:
    """Results in input order: images through ``scan_images`` (the engine's stream, read
    ahead), videos through :func:`scan_video` as their turn comes."""
    from genvis_trust.media import is_video_input
    from genvis_trust.scoring.engine import input_name

    queue: deque = deque()  # per input: (item, name) for a video, None for an image
    image_names: deque[str] = deque()
    names_it = iter(names) if names is not None else None

    def images():
        for k, item in enumerate(inputs):
            name = next(names_it) if names_it is not None else input_name(item, k)
            if is_video_input(item):
                queue.append((item, name))
                continue
            queue.append(None)
            image_names.append(name)
            yield item

    def names_of_images():  # the engine asks for a name right after each image
        while True:
            yield image_names.popleft()

    for res in scan_images(images(), names_of_images()):
        while queue[0] is not None:
            yield scan_video(scanner, *queue.popleft())
        queue.popleft()
        yield res
    while queue:
        yield scan_video(scanner, *queue.popleft())
