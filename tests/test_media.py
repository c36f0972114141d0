"""The media layer: any input as one MediaItem (container facts + the pixels it has)."""

from __future__ import annotations

import numpy as np

from genvis_trust.io import encode_image
from genvis_trust.media import FrameSampling, VideoOptions, encode_mp4, open_media

FEW = VideoOptions(sampling=FrameSampling(frames=3, scene_cuts=False))
WAV = b"RIFF\x24\x00\x00\x00WAVEfmt \x10\x00\x00\x00\x01\x00\x01\x00\x40\x1f\x00\x00\x80\x3e\x00\x00\x02\x00\x10\x00data\x00\x00\x00\x00"


def test_an_image_a_video_and_audio_each_say_what_pixels_they_have(tmp_path):
    png = encode_image(np.full((16, 24, 3), 90, np.uint8))
    clip = encode_mp4([np.full((32, 48, 3), 30 * i, np.uint8) for i in range(6)], fps=6)
    (tmp_path / "clip.bin").write_bytes(clip)  # a video is known by its bytes, not its name
    img = open_media(png, name="a.png")
    vid = open_media(tmp_path / "clip.bin", options=FEW)
    wav = open_media(WAV, name="a.wav")
    assert (img.kind, img.pixels, img.image.width, img.media_type) == ("image", "frame", 24, "image/png")
    assert (vid.kind, vid.pixels, vid.media_type, vid.size) == ("video", "frames", "video/mp4", len(clip))
    assert [f.reason for f in vid.video.frames] == ["uniform"] * 3 and vid.video.frames[-1].time_s > 0
    assert (wav.pixels, wav.media_type, wav.error.code) == ("none", "audio/wav", "not_an_image")
    assert wav.c2pa_container and not open_media(b"plain text", name="t").c2pa_container


def test_read_errors_and_a_long_video_over_the_byte_limit(tmp_path):
    missing = open_media(tmp_path / "nope.png")
    assert missing.data is None and missing.read_error.code == "not_found" and missing.pixels == "none"
    clip = encode_mp4([np.full((32, 32, 3), 40 * i, np.uint8) for i in range(4)], fps=4)
    p = tmp_path / "long.mp4"
    p.write_bytes(clip)
    big = open_media(p, options=VideoOptions(sampling=FEW.sampling, max_bytes=100))
    # its bytes are not held; its frames stream from disk and its digest is read from there
    assert big.data is None and big.read_error.code == "too_large" and big.error is None
    assert big.pixels == "frames" and big.size == len(clip) and big.media_type == "video/mp4"
    import hashlib

    assert big.sha256 == hashlib.sha256(clip).hexdigest()
    cut = open_media(clip[:600], name="cut.mp4", options=FEW)
    assert cut.pixels == "none" and cut.error.code in ("truncated", "corrupt") and cut.read_error is None
