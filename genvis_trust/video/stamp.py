"""Stamp a video: the watermark in every frame, then a signed C2PA manifest on the MP4, then
a store record (the order and payload of :func:`genvis_trust.provenance.stamp.stamp_array`).

Every frame carries the same payload (the store's issuer, the generative flag, the record
id), embedded by a watermark backend (by default ``dwtDctSvdVideo``: the image default's
embedder at a step that survives H.264 better); the marked frames are encoded as H.264 (libx264,
``crf``), audio streams are copied unchanged. Before signing, the written MP4 is sampled
and read back the way ``verify`` reads a video (the frames' soft scores pooled), and the
stamp fails loudly if the payload does not come back. A re-encode at an ordinary bitrate
(libx264 CRF 23) keeps it readable: the measured rate is in ``docs/video.md``.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from genvis_trust import __version__
from genvis_trust.io import ImageLoadError, atomic_write_bytes, sha256_bytes
from genvis_trust.media.frames import (
    FrameSampling,
    VideoLimits,
    check_limits,
    container_info,
    open_container,
    video_decode_error,
)

if TYPE_CHECKING:
    from genvis_trust.provenance.stamp import StampOptions

__all__ = ["VIDEO_BACKEND", "VideoStampResult", "reencode", "stamp_video"]

#: the backend a video is stamped with by default: dwtDctSvd at a larger quantisation step
#: (48 instead of 36), because 36 did not survive a CRF 23 re-encode on 3 of 7 benchmark
#: clips (before/after in ``docs/video.md`` and ``benchmarks/results/video_watermark.json``)
VIDEO_BACKEND = "dwtDctSvdVideo"


@dataclass
class VideoStampResult:
    path: str
    record_id: int
    backend: str
    payload_bits: str
    frames: int
    width: int
    height: int
    sha256: str
    manifest_bytes: int
    source_type: str
    issuer_id: int
    psnr_db: float  # mean over frames, marked vs original, before H.264
    self_check: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def _transcode(source, name: str, limits: VideoLimits, *, crf: int, pix_fmt: str = "yuv420p",
               preset: str = "medium", on_frame=None) -> tuple[bytes, int, tuple[int, int], list[str]]:
    """Decode every frame, pass it through ``on_frame(rgb) -> rgb`` and encode H.264 MP4
    (audio copied); returns (mp4 bytes, frames, (width, height), notes)."""
    import av

    notes: list[str] = []
    with open_container(source, name) as src, tempfile.TemporaryDirectory(prefix="gvt-stamp-") as d:
        info = container_info(src, name)
        check_limits(info, limits, name)
        vin = src.streams.video[0]
        audio = list(src.streams.audio)
        path = os.path.join(d, "out.mp4")
        n, size = 0, (info.width, info.height)
        with av.open(path, "w", format="mp4", options={"movflags": "+faststart"}) as dst:
            rate = vin.average_rate or Fraction(info.fps or 25).limit_denominator(1001)
            vout = dst.add_stream("libx264", rate=rate)
            vout.width, vout.height, vout.pix_fmt = info.width - info.width % 2, info.height - info.height % 2, pix_fmt
            vout.options = {"crf": str(crf), "preset": preset}
            aouts = {}
            for a in audio:
                try:
                    aouts[a.index] = dst.add_stream_from_template(a)
                except (ValueError, av.error.FFmpegError) as e:
                    notes.append(f"audio stream {a.index} ({a.codec_context.name}) not copied: {e}")
            if (vout.width, vout.height) != size:
                notes.append(f"frames cropped to even sides {vout.width}x{vout.height} for H.264 4:2:0")
            try:
                for packet in src.demux([vin, *[a for a in audio if a.index in aouts]]):
                    if packet.stream.type == "audio":
                        if packet.dts is not None:
                            packet.stream = aouts[packet.stream.index]
                            dst.mux(packet)
                        continue
                    for frame in packet.decode():
                        if n >= limits.max_frames:
                            raise ImageLoadError("too_large", f"video holds more than {limits.max_frames} frames", name)
                        rgb = frame.to_ndarray(format="rgb24")[: vout.height, : vout.width]
                        if on_frame is not None:
                            rgb = on_frame(rgb)
                        out = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
                        out.pts, out.time_base = frame.pts, frame.time_base
                        for p in vout.encode(out):
                            dst.mux(p)
                        n += 1
            except av.error.FFmpegError as e:
                raise video_decode_error(e, name, n) from None
            for p in vout.encode():
                dst.mux(p)
        if n == 0:
            raise ImageLoadError("no_frames", "the video stream holds no decodable frame", name)
        with open(path, "rb") as f:
            return f.read(), n, (vout.width, vout.height), notes


def reencode(data: bytes, *, crf: int = 23, preset: str = "medium", name: str = "<video>") -> bytes:
    """The video re-encoded with libx264 at ``crf`` (23: x264's default, an ordinary
    bitrate), audio copied: what a platform or an editor does to an upload."""
    return _transcode(data, name, VideoLimits(), crf=crf, preset=preset)[0]


def stamp_video(
    data: bytes,
    out_path: str | os.PathLike,
    *,
    store,
    material,
    backend: str = VIDEO_BACKEND,
    options: StampOptions | None = None,
    crf: int = 18,
    limits: VideoLimits = VideoLimits(),
    check_frames: int = 16,
    **fields: Any,
) -> VideoStampResult:
    """Watermark every frame, encode H.264 MP4, sign a C2PA manifest and record it.
    ``options`` (or its fields as keywords): what the content is
    (:class:`~genvis_trust.provenance.stamp.StampOptions`, as for every medium)."""
    from genvis_trust.media import VideoOptions
    from genvis_trust.provenance.c2pa_manifest import (
        build_manifest,
        is_generative,
        sign_image_bytes,
    )
    from genvis_trust.provenance.payload import PAYLOAD_VERSION, get_codec
    from genvis_trust.provenance.phash import phash
    from genvis_trust.provenance.stamp import StampError, reserve_record, stamp_options
    from genvis_trust.provenance.verify import verify_video
    from genvis_trust.provenance.watermarks import WatermarkError, get_watermark

    o = stamp_options(options, fields)
    generator, family, checkpoint_sha256, edited = o.generator, o.family, o.checkpoint_sha256, o.edited
    source_type, title = o.source_type, o.title
    what = str(title or out_path)
    be = get_watermark(backend)
    codec = get_codec(be.n_bits)
    dst, issuer, rid = reserve_record(store, material, codec, source_type=source_type, edited=edited, what=what)
    bits = codec.encode(rid, issuer=issuer, generative=is_generative(dst))
    psnrs: list[float] = []
    first: list[np.ndarray] = []

    def mark(rgb: np.ndarray) -> np.ndarray:
        be.check_image(rgb, what=what)
        out = be.embed(rgb, bits)
        mse = float(np.mean((out.astype(np.float32) - rgb.astype(np.float32)) ** 2))
        psnrs.append(99.0 if mse == 0 else 10 * np.log10(255.0**2 / mse))
        if not first:
            first.append(out)
        return out

    try:
        mp4, n, (w, h), notes = _transcode(data, what, limits, crf=crf, on_frame=mark)
    except WatermarkError as e:
        raise StampError(str(e)) from None
    except ImageLoadError as e:
        raise StampError(f"{what}: {e.message} [{e.code}]") from None
    # read back what will be shipped, the way verify reads a video
    opts = VideoOptions(sampling=FrameSampling(frames=check_frames, scene_cuts=False))
    rep, _, _ = verify_video(mp4, name=what, options=opts, backends=(backend,), known_generators=False)
    mine = next((x for x in rep.watermarks if x["backend"] == backend), {})
    pl = mine.get("payload") or {}
    if not mine.get("detected") or pl.get("record_id") != rid % codec.short_id_modulus or pl.get("issuer_id") != issuer:
        raise StampError(f"{what}: the {backend} watermark did not survive H.264 CRF {crf} "
                         f"({mine.get('matched_bits')}/{codec.n_bits} bits pooled over {mine.get('frames_read')} frames); "
                         "try a lower --crf")
    check = {"frames_read": mine["frames_read"], "frames_detected": mine["frames_detected"],
             "pooled_bits": mine["matched_bits"]}
    bit_str = "".join(map(str, bits.tolist()))
    manifest = build_manifest(title=title or Path(out_path).name, generator=generator, family=family,
                              checkpoint_sha256=checkpoint_sha256, edited=edited, watermark_backend=backend,
                              payload_bits=bit_str, record_id=rid, tool_version=__version__, source_type=dst,
                              issuer_id=issuer)
    try:
        signed, manifest_bytes = sign_image_bytes(mp4, "video/mp4", manifest, material)
    except Exception as e:  # c2pa's refusals name the file too
        raise StampError(f"{what}: C2PA signing of video/mp4 failed: {str(e)[:300]}") from None
    atomic_write_bytes(out_path, signed, mode=0o644)
    digest = sha256_bytes(signed)
    store.complete(rid, sha256=digest, phash=phash(first[0]), manifest=manifest_bytes, backend=backend,
                   payload_bits=bit_str, short_id=rid % codec.short_id_modulus, generator=generator, family=family,
                   checkpoint_sha256=checkpoint_sha256, path=str(out_path), width=w, height=h,
                   source_type=dst.rsplit("/", 1)[-1], payload_version=PAYLOAD_VERSION, issuer_id=issuer)
    return VideoStampResult(str(out_path), rid, backend, bit_str, n, w, h, digest, len(manifest_bytes),
                            dst.rsplit("/", 1)[-1], issuer, round(float(np.mean(psnrs)), 2), check, notes)
