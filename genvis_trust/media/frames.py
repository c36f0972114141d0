"""Video frames with PyAV: container facts and limits before decoding, sampled frames, H.264 out.

Limits (:class:`VideoLimits`) are checked on what the container declares (stream size,
duration, frame count) *before* a frame is decoded, and again on every decoded frame
(a stream can change size mid-way or hold more frames than it declares). A refusal is an
:class:`~genvis_trust.io.ImageLoadError` naming the file and the problem, with the codes
images use (``too_large``, ``truncated``, ``corrupt``, ``empty``) plus ``no_frames``.

Sampling (:class:`FrameSampling`) is one sequential decode: ``frames`` frames spread
evenly over the video (over the frame count the container declares; without one, kept
with a doubling stride, so memory stays at ``2 x frames`` frames) plus up to
``max_cuts`` frames that open a new shot (scene cuts: the mean absolute difference of
consecutive 64x36 grey thumbnails jumps above ``cut_threshold`` and ``cut_ratio`` times
the recent motion; the strongest cuts win).

>>> import numpy as np, io
>>> clip = encode_mp4([np.full((32, 48, 3), 40 * i, np.uint8) for i in range(6)], fps=6)
>>> v = sample_frames(io.BytesIO(clip), FrameSampling(frames=3), name="clip.mp4")
>>> v.info.width, v.info.height, v.decoded, [f.index for f in v.frames if f.reason == "uniform"]
(48, 32, 6, [0, 2, 5])
"""

from __future__ import annotations

import heapq
import io
import os
import re
from collections import deque
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from typing import Any, BinaryIO

import numpy as np

from genvis_trust.io import DEFAULT_MAX_PIXELS, ImageLoadError

__all__ = ["FrameSampling", "SampledFrame", "SampledVideo", "VideoInfo", "VideoLimits", "container_info", "encode_mp4",
           "open_container", "probe", "sample_frames", "video_decode_error", "video_media_type"]

MAX_SIDE = 16384  # the largest side H.264/HEVC levels allow; a 50000-px-wide stream is hostile


@dataclass(frozen=True)
class VideoLimits:
    """What a video may declare before any frame is decoded. ``max_pixels``: per frame."""

    max_duration_s: float = 1800.0
    max_frames: int = 108_000  # 30 minutes at 60 fps
    max_side: int = MAX_SIDE
    max_pixels: int = DEFAULT_MAX_PIXELS


@dataclass(frozen=True)
class FrameSampling:
    """Which frames are examined: ``frames`` spread evenly plus up to ``max_cuts`` scene cuts."""

    frames: int = 16
    scene_cuts: bool = True
    max_cuts: int = 8
    # a cut: the mean |grey difference| (0-255) of consecutive 64x36 thumbnails is at least
    # cut_threshold and cut_ratio times the median of the previous 8 differences (the motion)
    cut_threshold: float = 12.0
    cut_ratio: float = 3.0

    def __post_init__(self):
        if self.frames < 1:
            raise ValueError(f"frames must be at least 1, got {self.frames}")
        if self.max_cuts < 0:
            raise ValueError(f"max_cuts must be >= 0, got {self.max_cuts}")


@dataclass
class VideoInfo:
    """What the container declares (``frames_declared`` 0 and ``duration_s`` None: not declared)."""

    container: str
    codec: str
    width: int
    height: int
    fps: float | None
    duration_s: float | None
    frames_declared: int
    streams: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class SampledFrame:
    index: int  # position in decode order, from 0
    time_s: float
    reason: str  # uniform | scene_cut
    array: np.ndarray  # H x W x 3 uint8 RGB
    cut_score: float | None = None


@dataclass
class SampledVideo:
    info: VideoInfo
    frames: list[SampledFrame]  # in time order
    decoded: int  # frames decoded (every one was looked at for scene cuts)
    notes: list[str] = field(default_factory=list)


def video_media_type(head: bytes) -> str | None:
    """``video/...`` for content PyAV should open (ISO BMFF, QuickTime, AVI, Matroska/WebM)."""
    from genvis_trust.io import sniff_media_type

    mime = sniff_media_type(head)
    if mime and mime.startswith("video/"):
        return mime
    if bytes(head[:4]) == b"\x1a\x45\xdf\xa3":  # EBML: Matroska and WebM
        return "video/webm" if b"webm" in bytes(head[:64]) else "video/x-matroska"
    return None


def open_container(source: str | os.PathLike | bytes | BinaryIO, name: str):
    """An open PyAV container (a path, bytes or a file object); failures as ImageLoadError."""
    import av

    if isinstance(source, (bytes, bytearray, memoryview)):
        if len(source) == 0:
            raise ImageLoadError("empty", "file is empty (0 bytes)", name)
        source = io.BytesIO(bytes(source))
    try:
        # tag strings that are not UTF-8 (a damaged brand or title) must not sink a playable
        # file: PyAV's default 'strict' raised UnicodeDecodeError (found by fuzzing)
        return av.open(source if not isinstance(source, os.PathLike) else os.fspath(source), "r",
                       metadata_errors="replace")
    except av.error.FFmpegError as e:
        raise video_decode_error(e, name, decoded=0) from None
    except (OSError, ValueError) as e:  # a missing or unreadable file
        raise ImageLoadError("unreadable", f"cannot open video: {e}", name) from None


def video_decode_error(e: Exception, name: str, decoded: int) -> ImageLoadError:
    """A PyAV error as the ImageLoadError a record carries (``decoded``: frames read before it)."""
    msg = re.sub(r"^\[Errno -?\d+\] ", "", str(e).split(": '", 1)[0])
    if decoded:
        return ImageLoadError("truncated", f"video data ends or breaks after {decoded} decoded frame(s): {msg}", name)
    low = msg.lower()
    if "moov atom not found" in low or "end of file" in low or "invalid data found" in low:
        return ImageLoadError("truncated", f"the container could not be parsed ({msg}): cut short or not a complete video", name)
    return ImageLoadError("corrupt", f"video could not be decoded: {msg}", name)


def container_info(container, name: str) -> VideoInfo:
    """The first video stream's facts, read from the container's header."""
    if not container.streams.video:
        raise ImageLoadError("no_frames", "the container holds no video stream", name)
    s = container.streams.video[0]
    cc = s.codec_context
    if cc is None:  # FFmpeg has no decoder for the codec the stream names (found by fuzzing: a flipped codec tag)
        raise ImageLoadError("unsupported_format", "the video stream's codec has no decoder here: an unknown "
                             "codec, or a damaged stream header", name)
    w, h = int(cc.width or 0), int(cc.height or 0)
    rate = s.average_rate or s.guessed_rate or s.base_rate
    fps = float(rate) if rate else None
    duration = None
    if s.duration and s.time_base:
        duration = float(s.duration * s.time_base)
    elif container.duration:
        duration = container.duration / 1_000_000
    return VideoInfo(container=container.format.name, codec=cc.name, width=w, height=h, fps=fps,
                     duration_s=None if duration is None else round(duration, 3),
                     frames_declared=int(s.frames or 0), streams=len(container.streams.video))


def check_limits(info: VideoInfo, limits: VideoLimits, name: str) -> None:
    """Refuse, from the declared facts alone, what would cost too much to decode."""
    w, h = info.width, info.height
    if w <= 0 or h <= 0:
        raise ImageLoadError("corrupt", f"the video stream declares no frame size ({w}x{h})", name)
    if max(w, h) > limits.max_side:
        raise ImageLoadError("too_large", f"frames are {w}x{h}; the largest side allowed is {limits.max_side}", name)
    if w * h > limits.max_pixels:
        raise ImageLoadError("too_large", f"frames are {w}x{h} = {w * h} pixels; the limit is {limits.max_pixels}", name)
    if info.duration_s is not None and info.duration_s > limits.max_duration_s:
        raise ImageLoadError("too_large", f"video lasts {info.duration_s:.1f} s; the limit is {limits.max_duration_s:g} s", name)
    if info.frames_declared > limits.max_frames:
        raise ImageLoadError("too_large", f"video declares {info.frames_declared} frames; the limit is {limits.max_frames}", name)
    if info.duration_s is not None and info.fps and info.duration_s * info.fps > limits.max_frames * 1.01:
        raise ImageLoadError("too_large", f"{info.duration_s:.1f} s at {info.fps:g} fps is more than "
                             f"{limits.max_frames} frames", name)


def probe(source: str | os.PathLike | bytes | BinaryIO, *, limits: VideoLimits = VideoLimits(),
          name: str = "<video>") -> VideoInfo:
    """The container's declared facts, checked against ``limits``; nothing is decoded."""
    with open_container(source, name) as c:
        info = container_info(c, name)
        check_limits(info, limits, name)
        return info


def sample_frames(source: str | os.PathLike | bytes | BinaryIO, sampling: FrameSampling = FrameSampling(), *,
                  limits: VideoLimits = VideoLimits(), name: str = "<video>") -> SampledVideo:
    """Decode once and keep the sampled frames (see the module docstring)."""
    import av

    n = sampling.frames
    with open_container(source, name) as c:
        info = container_info(c, name)
        check_limits(info, limits, name)
        stream = c.streams.video[0]
        stream.thread_type = "AUTO"
        # uniform: the declared count gives the frames to keep; without one, every stride-th
        # frame, the stride doubling whenever more than 2n are kept
        m = info.frames_declared
        targets = set(np.linspace(0, m - 1, min(n, m)).round().astype(int).tolist()) if m else set()
        stride, kept = 1, []
        cuts: list[tuple[float, int, SampledFrame]] = []  # min-heap of the strongest cuts
        prev, recent = None, deque(maxlen=8)
        k = 0
        try:
            for frame in c.decode(stream):
                if k >= limits.max_frames:
                    raise ImageLoadError("too_large", f"video holds more than {limits.max_frames} frames "
                                         f"(it declares {info.frames_declared or 'no count'})", name)
                if frame.width * frame.height > limits.max_pixels or max(frame.width, frame.height) > limits.max_side:
                    raise ImageLoadError("too_large", f"frame {k} is {frame.width}x{frame.height}, over the limits", name)
                t = float(frame.time) if frame.time is not None else (k / info.fps if info.fps else float(k))
                rgb = None
                if (k in targets) if targets else (k % stride == 0):
                    rgb = frame.to_ndarray(format="rgb24")
                    kept.append(SampledFrame(k, round(t, 4), "uniform", rgb))
                    if not targets and len(kept) > 2 * n:
                        stride *= 2
                        kept = [f for f in kept if f.index % stride == 0]
                if sampling.scene_cuts and sampling.max_cuts:
                    grey = frame.to_ndarray(format="gray", width=64, height=36).astype(np.int16)
                    if prev is not None:
                        score = float(np.abs(grey - prev).mean())
                        motion = float(np.median(recent)) if recent else 0.0
                        recent.append(score)
                        if score >= max(sampling.cut_threshold, sampling.cut_ratio * motion) and \
                                (len(cuts) < sampling.max_cuts or score > cuts[0][0]):
                            arr = rgb if rgb is not None else frame.to_ndarray(format="rgb24")
                            item = (score, k, SampledFrame(k, round(t, 4), "scene_cut", arr, round(score, 2)))
                            if len(cuts) < sampling.max_cuts:
                                heapq.heappush(cuts, item)
                            else:
                                heapq.heapreplace(cuts, item)
                    prev = grey
                k += 1
        except av.error.FFmpegError as e:
            raise video_decode_error(e, name, k) from None
    if k == 0:
        raise ImageLoadError("no_frames", "the video stream holds no decodable frame", name)
    notes = []
    m = info.frames_declared
    # an edit list may hide a few declared frames; a file cut short loses many more
    if m and k < m - max(2, m // 20):
        raise ImageLoadError("truncated", f"decoded {k} of the {m} frames the container declares", name)
    if m and k != m:
        notes.append(f"decoded {k} frames; the container declares {m}")
    cut_at = {f.index: f for _, _, f in cuts}
    frames = [cut_at.pop(f.index, f) for f in _even(kept, n)] + list(cut_at.values())  # a cut says why
    frames.sort(key=lambda f: f.index)
    return SampledVideo(info, frames, k, notes)


def _even(kept: list[SampledFrame], n: int) -> list[SampledFrame]:
    """``n`` of ``kept`` (already evenly spaced) spread evenly, first one included."""
    if len(kept) <= n:
        return kept
    idx = np.linspace(0, len(kept) - 1, n).round().astype(int)
    return [kept[i] for i in sorted(set(idx.tolist()))]


def encode_mp4(frames: Iterable[np.ndarray], *, fps: float = 24, crf: int = 18, pix_fmt: str = "yuv420p",
               preset: str = "medium", faststart: bool = True) -> bytes:
    """H.264 MP4 bytes (libx264) of RGB frames, all of one even size. ``faststart``: the index
    (moov) before the data, as players streaming a file expect."""
    import tempfile

    import av

    # faststart rewrites the file in a second pass, which needs a real file, not a buffer
    with tempfile.TemporaryDirectory(prefix="gvt-mp4-") as d:
        path = os.path.join(d, "clip.mp4")
        _encode_to(path, frames, fps, crf, pix_fmt, preset, {"movflags": "+faststart"} if faststart else {}, av)
        with open(path, "rb") as f:
            return f.read()


def _encode_to(path, frames, fps, crf, pix_fmt, preset, opts, av) -> None:
    with av.open(path, "w", format="mp4", options=opts) as c:
        stream = None
        for arr in frames:
            arr = np.ascontiguousarray(arr, dtype=np.uint8)
            if stream is None:
                h, w = arr.shape[:2]
                if h % 2 or w % 2:
                    raise ValueError(f"H.264 with {pix_fmt} needs even frame sides, got {w}x{h}")
                stream = c.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
                stream.width, stream.height, stream.pix_fmt = w, h, pix_fmt
                stream.options = {"crf": str(crf), "preset": preset}
            for packet in stream.encode(av.VideoFrame.from_ndarray(arr, format="rgb24")):
                c.mux(packet)
        if stream is None:
            raise ValueError("encode_mp4 needs at least one frame")
        for packet in stream.encode():
            c.mux(packet)
