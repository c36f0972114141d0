"""Every signal for a video: C2PA and metadata on the container, every image signal on the
sampled frames, one whole-video verdict with per-frame evidence and timestamps.

- The container's bytes give C2PA (c2pa-python reads MP4/MOV), metadata and the store's
  sha256 / C2PA-record paths (:func:`~genvis_trust.provenance.verify.verify_bytes`;
  a file over the byte limit has its C2PA read from disk).
- Each sampled frame goes through the per-image signals: watermarks, known generators'
  marks, the store's watermark and perceptual-hash paths
  (:func:`~genvis_trust.provenance.verify.verify_frame`), and the detector through the
  scanner's batched engine; each frame gets its own verdict from :func:`genvis_trust.scan.fuse`.
- The whole-video verdict is :func:`~genvis_trust.scan.fuse` again, on the container's
  evidence plus the frames' evidence pooled: our watermark read from the frames' soft scores
  averaged (per bit, the share of its blocks voting 1, over every examined frame), then
  thresholded and decoded once (a mark too damaged to decode in any one frame can still
  decode pooled); ``dwtDctSvd`` is read at its video step too (``dwtDctSvdVideo``, what
  ``stamp`` writes into a video); a
  known generator's mark only when a majority of frames carry it, a store record found
  through a frame, and the detector's frame logits averaged (as tiles are within an image).

A video that cannot be sampled (truncated, no frames, over a limit) is an error record
that keeps its container evidence, like an image whose pixels do not decode.
"""

from __future__ import annotations

import os
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from genvis_trust.io import DEFAULT_MAX_BYTES, ImageLoadError, read_bytes

from .frames import FrameSampling, SampledVideo, VideoLimits, sample_frames, video_media_type

__all__ = ["VideoOptions", "is_video_input", "scan_video", "scan_with_videos", "verify_video", "video_backends"]

#: pixel-signal evidence a frame contributes (the container holds C2PA and metadata)
FRAME_KINDS = ("watermark", "known_generator", "store")


@dataclass(frozen=True)
class VideoOptions:
    """How videos are sampled and what they may declare."""

    sampling: FrameSampling = FrameSampling()
    limits: VideoLimits = VideoLimits()
    max_bytes: int = DEFAULT_MAX_BYTES  # above it C2PA is read from disk and metadata is not read


def is_video_input(item: Any) -> bool:
    """Whether ``item`` (a path or bytes) holds a video, from its first bytes."""
    if isinstance(item, (bytes, bytearray, memoryview)):
        return video_media_type(bytes(item[:64])) is not None
    if isinstance(item, (str, os.PathLike)):
        try:
            with open(item, "rb") as f:
                return video_media_type(f.read(64)) is not None
        except (OSError, ValueError):
            return False  # the image path names the problem
    return False


# --------------------------------------------------------------------------- provenance


def _container_report(source, name: str, options: VideoOptions, verify_kwargs: dict):
    from genvis_trust.provenance.verify import (
        REPORT_SCHEMA_VERSION,
        ProvenanceReport,
        _verify_large_file,
        verify_bytes,
    )

    not_pixels = ImageLoadError("not_an_image", "a video: its pixels are read from sampled frames", name)
    if isinstance(source, (bytes, bytearray, memoryview)):
        rep = verify_bytes(bytes(source), name=name, decode_error=not_pixels, **verify_kwargs)
    else:
        try:
            rep = verify_bytes(read_bytes(source, options.max_bytes, name=name), name=name, decode_error=not_pixels,
                               **verify_kwargs)
        except ImageLoadError as e:
            rep = ProvenanceReport(REPORT_SCHEMA_VERSION, name, error=e.to_dict())
            if e.code != "too_large":
                return rep
            _verify_large_file(rep, Path(source), **verify_kwargs)
    rep.error = None
    big = rep.input.pixels  # a file over the byte limit says how its bytes were read
    rep.input.pixels = "sampled video frames" + (f" ({big.removeprefix('not decoded: ')})" if big else "")
    return rep


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


def _pooled_watermarks(frame_reports: list, frame_readings: list[dict]) -> list:
    """One detection per backend from the frames' soft scores averaged (soft pooling: a bit
    that most frames read weakly right is not outvoted by a few frames that read it
    strongly wrong, as a majority of hard bits would let it be)."""
    from genvis_trust.provenance.watermarks import BitReading, detection_from_reading, get_watermark

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


def _video_evidence(rep, frame_reports: list, frame_readings: list[dict], times: list[float], store) -> None:
    """Add the frames' pooled pixel evidence to the container report ``rep``."""
    from genvis_trust.provenance.verify import Evidence, _add_store, _watermark_evidence

    n = len(frame_reports)
    pooled = _pooled_watermarks(frame_reports, frame_readings)
    rep.watermarks = [{**d.to_dict(), "frames_read": k, "frames_detected": hits} for d, k, hits in pooled]
    dets = [d for d, _, _ in pooled if d.detected]
    if store is not None and not (rep.store or {}).get("found"):
        _add_store(rep, store, rep.c2pa, None, None, dets)
        if not (rep.store or {}).get("found"):  # a frame's near-duplicate of a stamped item
            hits = [(r.store, t) for r, t in zip(frame_reports, times, strict=True) if (r.store or {}).get("found")]
            if hits:
                ids = Counter(h["record"]["id"] for h, _ in hits)
                best, k = ids.most_common(1)[0]
                found, t = next((h, t) for h, t in hits if h["record"]["id"] == best)
                rep.store = {**found, "frames": k, "first_time_s": t}
                rep.evidence.append(_frame_store_evidence(rep.store, k, n))
    if dets:
        d, k, hits = next(p for p in pooled if p[0].detected)
        ev = _watermark_evidence(d, rep.store)
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


def _frame_store_evidence(found: dict, k: int, n: int):
    from genvis_trust.provenance.verify import _store_evidence

    ev = _store_evidence(found)
    ev.summary += f" (in {k} of {n} frames, first at {found['first_time_s']:.2f} s)"
    ev.details.update(frames=k, of=n)
    return ev


def _frame_reports(frames, name: str, verify_kwargs: dict, workers: int) -> tuple[list, list[dict]]:
    """Each frame's report, and each frame's readings by backend (the soft scores the pooling
    averages, kept from the frame's own reading: nothing is read twice)."""
    from genvis_trust.provenance.verify import DEFAULT_VERIFY_BACKENDS, verify_frame
    from genvis_trust.provenance.watermarks import SharedTransforms, get_watermark, shared_readings

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


def verify_video(source, *, name: str | None = None, options: VideoOptions = VideoOptions(), workers: int = 1,
                 sampled: SampledVideo | None = None, **verify_kwargs):
    """Every provenance signal of a video (a path or bytes), as one
    :class:`~genvis_trust.provenance.verify.ProvenanceReport`: the container's C2PA, metadata
    and store record, and the sampled frames' marks pooled (``input.video`` names the frames).
    A video that cannot be sampled keeps its container report, with ``error`` set.
    Returns ``(report, frame reports, sampled video or None)``."""
    name = name or (str(source) if isinstance(source, (str, os.PathLike)) else "<video>")
    rep = _container_report(source, name, options, verify_kwargs)
    if rep.error is not None:
        return rep, [], None
    try:
        sampled = sampled or sample_frames(source, options.sampling, limits=options.limits, name=name)
    except ImageLoadError as e:
        rep.error = e.to_dict()
        rep.input.pixels = f"not decoded: {e.message}"
        return rep, [], None
    frame_reports, frame_readings = _frame_reports(sampled.frames, name, verify_kwargs, workers)
    _video_evidence(rep, frame_reports, frame_readings, [f.time_s for f in sampled.frames], verify_kwargs.get("store"))
    rep.input.video = _video_facts(sampled)
    return rep, frame_reports, sampled


def _video_facts(sampled: SampledVideo) -> dict[str, Any]:
    return {**sampled.info.to_dict(), "frames_decoded": sampled.decoded, "frames_examined": len(sampled.frames),
            "scene_cuts": sum(f.reason == "scene_cut" for f in sampled.frames), "notes": sampled.notes}


# --------------------------------------------------------------------------- scan


def scan_video(scanner, source, name: str, options: VideoOptions | None = None):
    """One :class:`~genvis_trust.scan.ScanResult` for a video, through ``scanner``'s detector,
    provenance settings and fusion."""
    from genvis_trust.scan import ScanResult, _fuse_without_pixels, fuse
    from genvis_trust.scoring.engine import ScoreRecord

    options = options or scanner.video_options
    if scanner.provenance:
        rep, frame_reports, sampled = verify_video(source, name=name, options=options, workers=scanner.engine.workers,
                                                   **scanner._verify_kwargs)
        err = rep.error
    else:
        rep, frame_reports, sampled, err = None, [], None, None
        try:
            sampled = sample_frames(source, options.sampling, limits=options.limits, name=name)
        except ImageLoadError as e:
            err = e.to_dict()
    if err is not None:
        res = _fuse_without_pixels(ScoreRecord(name, None, {}, err, None, rep))
        res.image.setdefault("media_type", (rep.input.media_type if rep else None) or "video")
        return res
    frames = sampled.frames
    recs = list(scanner.engine.score_paths([f.array for f in frames], names=[f"{name}@{f.time_s:.3f}s" for f in frames]))
    per_frame = []
    for f, r, fr in zip(frames, recs, frame_reports or [None] * len(frames), strict=True):
        r.provenance = fr
        per_frame.append((f, r, fuse(r)))
    agg = _aggregate_score(scanner.detector, [r for _, r, _ in per_frame])
    facts = {**_video_facts(sampled)}
    image = {"format": f"{sampled.info.container}/{sampled.info.codec}", "width": sampled.info.width,
             "height": sampled.info.height, "bytes": (rep.input.bytes if rep else None),
             "media_type": (rep.input.media_type if rep else None), "conversions": [], "notes": sampled.notes}
    stab, stab_frame = None, None
    if agg is not None and scanner.check_stability:
        from genvis_trust.scan import UNCERTAIN_BAND

        if UNCERTAIN_BAND[0] <= agg.probability <= UNCERTAIN_BAND[1]:
            closest = min((r for _, r, _ in per_frame if r.score is not None and r.loaded is not None),
                          key=lambda r: abs(r.score.probability - agg.probability), default=None)
            if closest is not None:
                stab = scanner._stability(closest)
                stab_frame = closest.input
    res: ScanResult = fuse(ScoreRecord(name, agg, image, None, None, rep), stab, sensitivity=getattr(scanner, "sensitivity", None))
    facts["frames"] = [_frame_row(f, r, fres) for f, r, fres in per_frame]
    if stab_frame is not None:
        facts["stability_frame"] = stab_frame  # the frame the stability check perturbed
    res.video = facts
    span = f"{sampled.info.duration_s:.1f} s" if sampled.info.duration_s is not None else f"{sampled.decoded} frames"
    res.summary += f" [{len(frames)} frames examined of {span}]"
    return res


def _aggregate_score(detector, recs: list):
    """The detector's video score: the mean of the frames' logits (each itself a mean over
    tiles). Outside the detector's domain when most frames are."""
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


def _frame_row(frame, rec, res) -> dict[str, Any]:
    return {
        "index": frame.index, "time_s": frame.time_s, "reason": frame.reason, "cut_score": frame.cut_score,
        "verdict": res.verdict,
        "probability": None if rec.score is None else round(rec.score.probability, 6),
        "out_of_domain": bool(rec.score is not None and rec.score.out_of_domain),
        "evidence": [{"kind": e.kind, "indicates": e.indicates, "summary": e.summary}
                     for e in res.evidence if e.indicates != "none" and e.kind in FRAME_KINDS + ("detector",)],
        "error": res.error,
    }


def scan_with_videos(scanner, inputs: Iterable[Any], names: Iterable[str] | None,
                     scan_images: Callable[[Iterable[Any], Iterable[str]], Iterator]) -> Iterator:
    """Results in input order: images through ``scan_images`` (the engine's stream, read
    ahead), videos through :func:`scan_video` as their turn comes."""
    from genvis_trust.scoring.engine import _name_of

    queue: deque = deque()  # per input: (item, name) for a video, None for an image
    image_names: deque[str] = deque()
    names_it = iter(names) if names is not None else None

    def images():
        for k, item in enumerate(inputs):
            name = next(names_it) if names_it is not None else _name_of(item, k)
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
