"""Video as an input: sampled frames through every image signal, C2PA on the container,
per-frame watermark stamping, generated clips. See ``docs/video.md``.

The pieces live in the layers they belong to and are gathered here: frames and sampling in
:mod:`genvis_trust.media`, a video's provenance report in
:mod:`genvis_trust.provenance.verify` (:func:`verify_video`), its verdict in
:mod:`genvis_trust.scan` (:func:`scan_video`); stamping (:mod:`.stamp`) and generated clips
(:mod:`.generate`) are this package's own. ``verify_video`` and the scan functions are
imported on first use, so ``import genvis_trust.video`` stays light.
"""

from genvis_trust.media import (
    FrameSampling,
    SampledFrame,
    SampledVideo,
    VideoInfo,
    VideoLimits,
    VideoOptions,
    encode_mp4,
    is_video_input,
    probe,
    sample_frames,
    video_media_type,
)

__all__ = [
    "FrameSampling",
    "SampledFrame",
    "SampledVideo",
    "VideoInfo",
    "VideoLimits",
    "VideoOptions",
    "encode_mp4",
    "is_video_input",
    "probe",
    "sample_frames",
    "scan_video",
    "scan_with_videos",
    "verify_video",
    "video_backends",
    "video_media_type",
]


def __getattr__(name: str):
    # the provenance checks and the scanner import torch and the detectors: not at import time
    if name in ("verify_video", "video_backends"):
        from genvis_trust.provenance import verify

        return getattr(verify, name)
    if name in ("scan_video", "scan_with_videos"):
        from genvis_trust import scan

        return getattr(scan, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
