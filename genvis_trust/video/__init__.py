"""Video as an input: sampled frames through every image signal, C2PA on the container,
per-frame watermark stamping, generated clips. See ``docs/video.md``."""

from .frames import (
    FrameSampling,
    SampledFrame,
    SampledVideo,
    VideoInfo,
    VideoLimits,
    encode_mp4,
    probe,
    sample_frames,
    video_media_type,
)
from .signals import VideoOptions, is_video_input, scan_video, scan_with_videos, verify_video

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
    "video_media_type",
]
