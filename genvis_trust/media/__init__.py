"""Media: any input (path or bytes) as container facts and the pixels it has, below the
provenance checks and the scan that read it. :mod:`.item` makes the item, :mod:`.frames`
samples a video's frames (and encodes H.264)."""

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
from .item import (
    MediaItem,
    VideoOptions,
    c2pa_reader_types,
    is_video_input,
    open_media,
    video_facts,
)

__all__ = [
    "FrameSampling",
    "MediaItem",
    "SampledFrame",
    "SampledVideo",
    "VideoInfo",
    "VideoLimits",
    "VideoOptions",
    "c2pa_reader_types",
    "encode_mp4",
    "is_video_input",
    "open_media",
    "probe",
    "sample_frames",
    "video_facts",
    "video_media_type",
]
