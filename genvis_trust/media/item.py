"""Any input (a path or bytes) as one typed :class:`MediaItem`: its container facts and the
pixels it has. ``verify`` and ``scan`` take an item; they never decide again what a file is.

- **container**: the bytes (or, over the byte limit, the path they are streamed from), the
  media type sniffed from the content, the size and sha256, and whether c2pa-python reads
  this kind of container (:attr:`MediaItem.c2pa_container`);
- **pixels**: ``"frames"`` (a video: frames sampled with their timestamps, :mod:`.frames`),
  ``"frame"`` (an image, decoded once) or ``"none"`` (audio, PDF, text, or pixels that did not
  decode: :attr:`MediaItem.error` says why).

A video is recognised from its first bytes (:func:`is_video_input`), never from its name.
Nothing here raises for bad input: a file that cannot be read or decoded is an item whose
``read_error`` / ``error`` is the :class:`~genvis_trust.io.ImageLoadError` a record carries.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from genvis_trust.io import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_PIXELS,
    ImageLoadError,
    LoadedImage,
    decode_image,
    read_bytes,
    sha256_bytes,
    sha256_file,
    sniff_media_type,
)

from .frames import FrameSampling, SampledVideo, VideoLimits, sample_frames, video_media_type

__all__ = ["MediaItem", "VideoOptions", "c2pa_reader_types", "is_video_input", "open_media", "video_facts"]


@dataclass(frozen=True)
class VideoOptions:
    """How videos are sampled and what they may declare."""

    sampling: FrameSampling = FrameSampling()
    limits: VideoLimits = VideoLimits()
    max_bytes: int = DEFAULT_MAX_BYTES  # above it C2PA is read from disk and metadata is not read


@dataclass
class MediaItem:
    """One input: container facts and the pixels it has (see the module's docstring)."""

    name: str
    kind: str = "image"  # "video" (pixels from sampled frames) or "image" (anything else: decoded, or no pixels)
    data: bytes | None = None  # the container's bytes; None when they were not read (read_error)
    path: Path | None = None  # the file it came from (a file over the byte limit is streamed from here)
    source: Any = None  # what was given (a path or bytes): frames are sampled from it
    read_error: ImageLoadError | None = None  # why ``data`` was not read
    image: LoadedImage | None = None  # an image's pixels
    video: SampledVideo | None = None  # a video's sampled frames, with timestamps
    error: ImageLoadError | None = None  # why there are no pixels (the read error when nothing was read)

    @property
    def is_video(self) -> bool:
        return self.kind == "video"

    @property
    def pixels(self) -> str:
        """``"frames"``, ``"frame"`` or ``"none"``."""
        if self.video is not None:
            return "frames"
        return "frame" if self.image is not None else "none"

    @property
    def size(self) -> int | None:
        if self.data is not None:
            return len(self.data)
        try:
            return self.path.stat().st_size if self.path is not None else None
        except OSError:
            return None

    @cached_property
    def media_type(self) -> str | None:
        """Sniffed from the content (the first 4 KiB of a file whose bytes were not read)."""
        if self.data is not None:
            return sniff_media_type(self.data)
        head = _head(self.path, 4096) if self.path is not None else None
        return sniff_media_type(head) if head is not None else None

    @cached_property
    def sha256(self) -> str | None:
        """Of the whole container (streamed from disk when its bytes were not read)."""
        if self.data is not None:
            return sha256_bytes(self.data)
        if self.read_error is not None and self.read_error.code == "too_large" and self.path is not None:
            return sha256_file(self.path)
        return None

    @property
    def c2pa_container(self) -> bool:
        """Whether c2pa-python reads this kind of container (its C2PA can be checked)."""
        return self.media_type is not None and self.media_type in c2pa_reader_types()


@functools.cache
def c2pa_reader_types() -> frozenset[str]:
    """The MIME types c2pa-python's Reader takes (asked of the library once; the provenance
    checks read C2PA from exactly these)."""
    import c2pa

    return frozenset(c2pa.Reader.get_supported_mime_types())


def _head(path, n: int) -> bytes | None:
    try:
        with open(path, "rb") as f:
            return f.read(n)
    except (OSError, ValueError):
        return None


def is_video_input(item: Any) -> bool:
    """Whether ``item`` (a path or bytes) holds a video, from its first bytes."""
    if isinstance(item, (bytes, bytearray, memoryview)):
        return video_media_type(bytes(item[:64])) is not None
    if isinstance(item, (str, os.PathLike)):
        head = _head(item, 64)
        return head is not None and video_media_type(head) is not None  # unreadable: the image path names the problem
    return False


def open_media(
    source: str | os.PathLike | bytes,
    *,
    name: str | None = None,
    options: VideoOptions | None = None,
    max_bytes: int | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    container: bool = True,
    pixels: bool = True,
    video: bool | None = None,
    sampled: SampledVideo | None = None,
) -> MediaItem:
    """``source`` as a :class:`MediaItem`.

    ``options``: how a video is sampled and its byte limit (``options.max_bytes``);
    ``max_bytes``: the byte limit of anything else (default: ``options.max_bytes``);
    ``max_pixels``: an image's pixel limit. ``container=False``: a video's bytes are not read
    (only its frames are wanted); ``pixels=False``: nothing is decoded or sampled (the caller
    decodes). ``video``: treat as a video (True) or not (False) whatever the first bytes say;
    ``sampled``: a video's frames, already sampled."""
    options = options or VideoOptions()
    is_bytes = isinstance(source, (bytes, bytearray, memoryview))
    name = name or (str(source) if not is_bytes else "<bytes>")
    as_video = is_video_input(source) if video is None else video
    item = MediaItem(name, "video" if as_video else "image", source=source,
                     path=None if is_bytes else Path(source))
    if is_bytes:
        item.data = bytes(source)
    elif container or not as_video:
        limit = options.max_bytes if as_video else (options.max_bytes if max_bytes is None else max_bytes)
        try:
            item.data = read_bytes(source, limit, name=name)
        except ImageLoadError as e:
            item.read_error = item.error = e
            if not (as_video and e.code == "too_large"):  # a long video's frames stream from disk
                return item
    if not pixels:
        return item
    if as_video:
        try:
            item.video = sampled or sample_frames(source, options.sampling, limits=options.limits, name=name)
            item.error = None
        except ImageLoadError as e:
            item.error = e
    else:
        try:
            item.image = decode_image(item.data, path=name, max_pixels=max_pixels)
        except ImageLoadError as e:
            item.error = e
    return item


def video_facts(sampled: SampledVideo) -> dict[str, Any]:
    """A sampled video's facts as records carry them: the container's, and the frames examined."""
    return {**sampled.info.to_dict(), "frames_decoded": sampled.decoded, "frames_examined": len(sampled.frames),
            "scene_cuts": sum(f.reason == "scene_cut" for f in sampled.frames), "notes": sampled.notes}
