"""Tests for genvis_trust.io: every input is built here, in memory or under tmp_path."""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import random
import resource
import stat
import struct
import warnings
import zlib

import cv2
import numpy as np
import pytest
from PIL import Image, ImageFile, JpegImagePlugin

from genvis_trust.io import (
    DEFAULT_MAX_PIXELS,
    ERROR_CODES,
    IMAGE_EXTENSIONS,
    ImageLoadError,
    LoadedImage,
    atomic_write_bytes,
    atomic_write_text,
    decode_image,
    encode_image,
    load_image,
    read_bytes,
    sha256_bytes,
    sha256_file,
    sniff_format,
)

# --------------------------------------------------------------------------- helpers


def _save(im: Image.Image, fmt: str, **kwargs) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def _noise(h: int = 48, w: int = 64, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _chunk(ctype: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + ctype + body + struct.pack(">I", zlib.crc32(ctype + body))


def _png(width: int, height: int, idat: bytes, *, bit_depth: int = 8, color_type: int = 2) -> bytes:
    """A PNG with hand-made chunks and correct CRCs; ``idat`` is the (compressed) payload."""
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")
    )


def _refusal(source, **kwargs) -> ImageLoadError:
    with pytest.raises(ImageLoadError) as info:
        load_image(source, **kwargs)
    err = info.value
    assert err.code in ERROR_CODES
    return err


def _assert_names(err: ImageLoadError, path) -> None:
    assert err.path == str(path)
    assert str(path) in str(err)
    assert err.to_dict() == {"code": err.code, "message": err.message, "path": str(path)}


def _assert_rgb(img: LoadedImage, shape: tuple[int, int]) -> None:
    assert isinstance(img, LoadedImage)
    assert img.array.dtype == np.uint8
    assert img.array.shape == (*shape, 3)
    assert img.array.flags.c_contiguous


# --------------------------------------------------------------------------- refusals


def test_jpeg_cut_before_its_scan_is_truncated(tmp_path):
    """Nothing decodes when the data ends before the image data starts: an error."""
    data = _save(Image.fromarray(_noise()), "JPEG", quality=90)
    path = tmp_path / "cut.jpg"
    for n in (data.index(b"\xff\xda") + 6, data.index(b"\xff\xc4") + 10, 20):
        path.write_bytes(data[:n])
        err = _refusal(path)
        assert err.code == "truncated", (n, err)
        _assert_names(err, path)


def _photo_like(h: int = 480, w: int = 640) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    a = np.stack([(x * 255 // w), (y * 255 // h), ((x + y) * 3) % 256], axis=2)
    return np.clip(a + np.random.default_rng(1).integers(-20, 20, a.shape), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("cut, missing_rows", [(33, (1, 32)), (0.5, (200, 260)), (2, (0, 0))])
def test_jpeg_with_its_end_missing_decodes_as_far_as_it_goes(cut, missing_rows):
    """A camera JPEG cut early (no EOI; every viewer shows it) is decoded, with a note saying
    how many rows are not in the file; the rows it has are the original's."""
    a = _photo_like()
    data = _save(Image.fromarray(a), "JPEG", quality=92)
    full = load_image(data).array
    n = len(data) - cut if isinstance(cut, int) else int(len(data) * cut)
    img = load_image(data[:n], name="cut.jpg")
    assert img.array.shape == full.shape
    (note,) = [x for x in img.notes if x.startswith("JPEG data missing at its end")]
    if missing_rows == (0, 0):
        assert "every row decoded" in note
        np.testing.assert_array_equal(img.array, full)
        return
    rows = int(note.split(" of the stored image (")[1].split(" of ")[0])
    assert missing_rows[0] <= rows <= missing_rows[1], note
    kept = full.shape[0] - rows
    # what it has is the original's (to one MCU row: chroma upsampling reaches across the cut)
    np.testing.assert_array_equal(img.array[: kept - 16], full[: kept - 16])
    assert np.abs(img.array[kept + 16 :].astype(int) - full[kept + 16 :]).max() > 40  # the rest is filler


def test_jpeg_cut_keeps_the_pixel_limit():
    data = _save(Image.fromarray(_photo_like()), "JPEG", quality=92)
    err = _refusal(data[: len(data) // 2], max_pixels=1000)
    assert err.code == "too_large"


@pytest.mark.parametrize("keep", [0.5, 0.9, 40, 20, 9])
def test_truncated_png_is_truncated(tmp_path, keep):
    # Decided: a PNG that stops before its pixel data is complete is "truncated" wherever
    # the cut falls (inside IDAT, inside IHDR, right after the signature).
    data = _save(Image.fromarray(_noise()), "PNG")
    n = int(len(data) * keep) if isinstance(keep, float) else keep
    path = tmp_path / "cut.png"
    path.write_bytes(data[:n])
    err = _refusal(path)
    assert err.code == "truncated", err
    _assert_names(err, path)


def test_png_missing_only_iend_loads_with_a_note():
    a = _noise()
    data = _save(Image.fromarray(a), "PNG")
    img = load_image(data[:-6])
    np.testing.assert_array_equal(img.array, a)
    assert any("cut short" in n for n in img.notes)


@pytest.mark.parametrize("fmt", ["GIF", "WEBP", "BMP", "TIFF"])
def test_truncated_other_formats_are_truncated(fmt):
    data = _save(Image.fromarray(_noise()), fmt)
    for n in (len(data) // 2, 30):
        assert _refusal(data[:n]).code == "truncated", (fmt, n)


def test_zero_byte_file_is_empty(tmp_path):
    path = tmp_path / "zero.png"
    path.write_bytes(b"")
    err = _refusal(path)
    assert err.code == "empty"
    _assert_names(err, path)


def test_text_named_png_is_not_an_image(tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("BMW and other words, certainly not pixels\n" * 3)
    err = _refusal(path)
    assert err.code == "not_an_image"
    _assert_names(err, path)


def test_random_bytes_are_not_an_image(tmp_path):
    data = bytes(np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8))
    assert sniff_format(data) is None
    path = tmp_path / "noise.jpg"
    path.write_bytes(data)
    err = _refusal(path)
    assert err.code == "not_an_image"
    _assert_names(err, path)
    assert _refusal(data, name="upload-17").path == "upload-17"


def test_not_found_and_directory(tmp_path):
    missing = tmp_path / "nope.png"
    err = _refusal(missing)
    assert err.code == "not_found"
    _assert_names(err, missing)
    err = _refusal(tmp_path)
    assert err.code == "unreadable"
    _assert_names(err, tmp_path)
    assert _refusal(str(tmp_path) + "/a\x00b.png").code == "unreadable"


def test_errors_use_the_given_name_for_paths_too(tmp_path):
    err = _refusal(tmp_path / "nope.png", name="s3://bucket/nope.png")
    assert err.code == "not_found" and err.path == "s3://bucket/nope.png"


def test_png_bomb_header_is_refused_before_decoding(tmp_path, monkeypatch):
    # 100000 x 100000 RGB would need 30 GB; the file is a few dozen bytes.
    bomb = _png(100_000, 100_000, zlib.compress(b"\x00" * 1000))
    assert len(bomb) < 200
    path = tmp_path / "bomb.png"
    path.write_bytes(bomb)

    def no_decode(self, *args, **kwargs):
        raise AssertionError("pixels were decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decode)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    err = _refusal(path)
    assert err.code == "too_large"
    _assert_names(err, path)
    # Even when the caller allows more than Pillow does, the refusal says which limit hit.
    err = _refusal(bomb, max_pixels=10**11)
    assert err.code == "too_large" and "MAX_IMAGE_PIXELS" in err.message
    # Under Pillow's own bomb limit but over ours: our check, still before any decode.
    err = _refusal(_png(9000, 9000, zlib.compress(b"\x00" * 1000)))
    assert err.code == "too_large" and str(DEFAULT_MAX_PIXELS) in err.message
    grown_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before
    assert grown_kb < 100 * 1024


def test_real_compressible_image_over_max_pixels(tmp_path):
    data = _save(Image.new("L", (5000, 5000)), "PNG", compress_level=1)
    assert len(data) < 200_000
    path = tmp_path / "zeros.png"
    path.write_bytes(data)
    err = _refusal(path, max_pixels=1_000_000)
    assert err.code == "too_large"
    assert "25000000" in err.message
    _assert_names(err, path)


def test_file_over_max_bytes(tmp_path):
    data = _save(Image.fromarray(_noise()), "PNG")
    path = tmp_path / "big.png"
    path.write_bytes(data)
    err = _refusal(path, max_bytes=len(data) - 1)
    assert err.code == "too_large"
    _assert_names(err, path)
    assert _refusal(data, max_bytes=100).code == "too_large"
    with pytest.raises(ImageLoadError) as info:
        read_bytes(path, max_bytes=10)
    assert info.value.code == "too_large"
    assert load_image(path, max_bytes=len(data)).width == 64


@pytest.mark.parametrize(
    "fmt, data",
    [
        ("SVG", b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg"/>'),
        ("SVG", b'\xef\xbb\xbf<svg xmlns="http://www.w3.org/2000/svg"></svg>'),
        ("ICO", _save(Image.new("RGB", (16, 16)), "ICO")),
        ("PSD", b"8BPS\x00\x01" + bytes(64)),
        ("JXL", b"\xff\x0a" + bytes(64)),
        ("JPEG2000", b"\xff\x4f\xff\x51" + bytes(64)),
    ],
)
def test_recognised_but_unsupported_formats(tmp_path, fmt, data):
    assert sniff_format(data) == fmt
    path = tmp_path / f"x.{fmt.lower()}"
    path.write_bytes(data)
    err = _refusal(path)
    assert err.code == "unsupported_format"
    assert fmt in err.message
    _assert_names(err, path)


@pytest.mark.parametrize(
    "fmt, header",
    [
        ("HEIC", b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic"),
        ("AVIF", b"\x00\x00\x00\x1cftypavif\x00\x00\x00\x00avifmif1miaf"),
        # Generic HEIF major brand, AVIF only among the compatible brands.
        ("AVIF", b"\x00\x00\x00\x1cftypmif1\x00\x00\x00\x00mif1avifmiaf"),
    ],
)
def test_heic_avif_decoded_and_broken_ones_named(tmp_path, fmt, header):
    """HEIC via pillow-heif, AVIF via Pillow: real files decode to RGB; a header with
    nothing behind it is a typed refusal naming the file, not unsupported_format."""
    import pillow_heif

    pillow_heif.register_heif_opener()
    rgb = np.random.default_rng(0).integers(0, 256, (48, 64, 3), np.uint8)
    real = _save(Image.fromarray(rgb), "HEIF" if fmt == "HEIC" else "AVIF")
    assert sniff_format(real) == fmt
    img = load_image(real)
    assert img.format == fmt and img.array.shape == (48, 64, 3)
    assert np.abs(img.array.astype(int) - rgb).mean() < 60  # lossy, but these pixels
    path = tmp_path / f"x.{fmt.lower()}"
    path.write_bytes(header + bytes(64))
    assert sniff_format(path.read_bytes()) == fmt
    err = _refusal(path)
    assert err.code in ("corrupt", "truncated")
    _assert_names(err, path)


def test_sniff_format_details():
    assert sniff_format(b"BM this is text, not a bitmap header") is None
    assert sniff_format(_save(Image.new("RGB", (4, 4)), "BMP")) == "BMP"
    assert sniff_format(b"II+\x00\x08\x00\x00\x00" + bytes(8)) == "TIFF"  # BigTIFF
    assert sniff_format(b"\x00\x00\x00\x18ftypisom\x00\x00\x00\x00isommp42") is None  # video
    assert sniff_format(memoryview(b"GIF89a" + bytes(10))) == "GIF"
    assert {".jpg", ".png", ".heic", ".heif", ".avif"} <= IMAGE_EXTENSIONS


def test_png_with_garbage_idat_is_corrupt(tmp_path):
    garbage = bytes(np.random.default_rng(2).integers(0, 256, 300, dtype=np.uint8))
    path = tmp_path / "garbage.png"
    path.write_bytes(_png(16, 16, garbage))
    err = _refusal(path)
    assert err.code == "corrupt"
    _assert_names(err, path)
    # A valid zlib stream that inflates to too few rows is short pixel data.
    assert _refusal(_png(16, 16, zlib.compress(b"\x00" * 10))).code in {"truncated", "corrupt"}


def test_jpeg_with_garbage_after_soi(tmp_path):
    rng = np.random.default_rng(3)
    path = tmp_path / "garbage.jpg"
    for _ in range(10):
        path.write_bytes(b"\xff\xd8\xff" + bytes(rng.integers(0, 256, 500, dtype=np.uint8)))
        err = _refusal(path)
        assert err.code in {"corrupt", "truncated"}
        _assert_names(err, path)
    # Complete framing (segments, scan, EOI) with a broken header inside is corrupt.
    good = _save(Image.fromarray(_noise()), "JPEG")
    sof = good.index(b"\xff\xc0")
    bad = good[: sof + 5] + b"\x00\x00\x00\x00" + good[sof + 9 :]  # height = width = 0
    assert _refusal(bad).code == "corrupt"


def test_image_load_error_contract():
    err = ImageLoadError("corrupt", "bad", "a.png")
    again = pickle.loads(pickle.dumps(err))
    assert (again.code, again.message, again.path, str(again)) == (
        "corrupt",
        "bad",
        "a.png",
        str(err),
    )
    with pytest.raises(ValueError):
        ImageLoadError("no_such_code", "x")


# --------------------------------------------------------------------------- conversions


def test_cmyk_jpeg_to_rgb():
    data = _save(Image.new("CMYK", (8, 8), (0, 255, 255, 0)), "JPEG", quality=95)
    img = load_image(data)
    _assert_rgb(img, (8, 8))
    assert img.mode == "CMYK"
    assert any("CMYK" in c for c in img.conversions)
    assert np.abs(img.array.astype(int) - [255, 0, 0]).max() <= 4


def test_16bit_grayscale_png_is_scaled():
    values = np.array([[0, 65535, 32896, 25700, 257]], np.uint16)
    ok, buf = cv2.imencode(".png", values)
    assert ok
    img = load_image(buf.tobytes())
    _assert_rgb(img, (1, 5))
    assert img.mode.startswith("I;16")
    np.testing.assert_array_equal(img.array[..., 0], [[0, 255, 128, 100, 1]])
    np.testing.assert_array_equal(img.array[..., 0], img.array[..., 2])
    assert any("16" in c and "8-bit" in c for c in img.conversions)


def test_16bit_rgb_png_keeps_the_high_byte_and_says_so():
    bgr = np.zeros((2, 2, 3), np.uint16)
    bgr[0, 0] = [0, 32896, 65535]  # B, G, R
    bgr[0, 1] = [0x80FF, 0x0100, 0xFF00]
    ok, buf = cv2.imencode(".png", bgr)
    assert ok
    img = load_image(buf.tobytes())
    _assert_rgb(img, (2, 2))
    assert img.array[0, 0].tolist() == [255, 128, 0]
    assert img.array[0, 1].tolist() == [0xFF, 0x01, 0x80]
    assert img.array[1, 1].tolist() == [0, 0, 0]
    assert any("16 bits per channel" in c for c in img.conversions)


def test_high_bit_depth_tiff_modes():
    f = Image.fromarray(np.array([[0.0, 0.5, 1.0]], np.float32), mode="F")
    img = load_image(_save(f, "TIFF"))
    assert img.array[0, :, 0].tolist() == [0, 128, 255]
    assert any("0..1" in c for c in img.conversions)
    i32 = Image.fromarray(np.array([[0, 1000, 65535]], np.int32), mode="I")
    img = load_image(_save(i32, "TIFF"))
    assert img.array[0, :, 0].tolist() == [0, 4, 255]


def test_grayscale_palette_and_bilevel():
    g = np.arange(48 * 64, dtype=np.uint32).reshape(48, 64).astype(np.uint8)
    img = load_image(_save(Image.fromarray(g, mode="L"), "PNG"))
    assert img.mode == "L" and "grayscale to RGB" in img.conversions
    np.testing.assert_array_equal(img.array, np.repeat(g[..., None], 3, axis=2))

    pal = Image.new("P", (4, 2))
    pal.putpalette([10, 20, 30, 200, 100, 50] + [0] * 762)
    pal.putpixel((1, 0), 1)
    img = load_image(_save(pal, "PNG"))
    assert img.mode == "P" and "palette to RGB" in img.conversions
    assert img.array[0, 0].tolist() == [10, 20, 30]
    assert img.array[0, 1].tolist() == [200, 100, 50]

    bits = Image.new("1", (8, 2))
    bits.putpixel((3, 1), 1)
    img = load_image(_save(bits, "PNG"))
    assert img.mode == "1" and "bilevel to RGB" in img.conversions
    assert set(np.unique(img.array)) == {0, 255}
    assert img.array[1, 3].tolist() == [255, 255, 255]


def test_rgba_alpha_is_discarded_and_reported():
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., :3] = [10, 200, 30]
    rgba[..., 3] = 255
    rgba[0, 0, 3] = 0
    img = load_image(_save(Image.fromarray(rgba, mode="RGBA"), "PNG"))
    assert img.mode == "RGBA"
    assert img.array[0, 0].tolist() == [10, 200, 30]  # colour kept, alpha dropped
    assert any("alpha channel discarded" in c and "transparent" in c for c in img.conversions)


def test_transparency_key_is_reported():
    im = Image.new("RGB", (2, 1), (5, 6, 7))
    img = load_image(_save(im, "PNG", transparency=(5, 6, 7)))
    assert img.array[0, 0].tolist() == [5, 6, 7]
    assert any("transparency discarded" in c for c in img.conversions)


def test_animated_gif_first_frame():
    frames = [Image.new("RGB", (10, 6), c) for c in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    data = _save(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=40, loop=0)
    img = load_image(data)
    _assert_rgb(img, (6, 10))
    assert (img.array == [255, 0, 0]).all()
    assert any("3 frames" in n for n in img.notes)


def test_multipage_tiff_first_page():
    pages = [Image.new("RGB", (4, 4), c) for c in ((1, 2, 3), (4, 5, 6))]
    img = load_image(_save(pages[0], "TIFF", save_all=True, append_images=pages[1:]))
    assert (img.array == [1, 2, 3]).all()
    assert any("2 frames" in n for n in img.notes)


def test_broken_later_tiff_page_does_not_hide_the_first():
    pages = [Image.new("RGB", (4, 4), c) for c in ((1, 2, 3), (4, 5, 6))]
    d = bytearray(_save(pages[0], "TIFF", save_all=True, append_images=pages[1:]))
    assert d[:2] == b"II"
    ifd = struct.unpack_from("<I", d, 4)[0]
    ifd2 = struct.unpack_from("<I", d, ifd + 2 + 12 * struct.unpack_from("<H", d, ifd)[0])[0]
    for i in range(struct.unpack_from("<H", d, ifd2)[0]):  # drop page 2's ImageWidth tag
        if struct.unpack_from("<H", d, ifd2 + 2 + 12 * i)[0] == 256:
            struct.pack_into("<H", d, ifd2 + 2 + 12 * i, 0xC000)
    img = load_image(bytes(d))  # counting frames raised TypeError("Missing dimensions")
    assert (img.array == [1, 2, 3]).all()
    assert any("could not count frames" in n for n in img.notes)


def _exif(orientation: int) -> Image.Exif:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif


@pytest.mark.parametrize("orientation, k", [(6, -1), (8, 1)])
def test_exif_orientation_png_exact(orientation, k):
    a = _noise(10, 30)
    img = load_image(_save(Image.fromarray(a), "PNG", exif=_exif(orientation)))
    np.testing.assert_array_equal(img.array, np.rot90(a, k))
    assert f"EXIF orientation {orientation} applied" in img.conversions


@pytest.mark.parametrize("orientation", [6, 8])
def test_exif_rotated_jpeg(orientation):
    # Stored 40 wide x 20 high: left half red, right half blue.
    a = np.zeros((20, 40, 3), np.uint8)
    a[:, :20] = [255, 0, 0]
    a[:, 20:] = [0, 0, 255]
    img = load_image(_save(Image.fromarray(a), "JPEG", quality=95, exif=_exif(orientation)))
    _assert_rgb(img, (40, 20))
    top, bottom = img.array[5, 10].astype(int), img.array[35, 10].astype(int)
    red, blue = np.array([255, 0, 0]), np.array([0, 0, 255])
    # 6: rotate 90 clockwise to display, the left edge goes to the top; 8: to the bottom.
    want_top, want_bottom = (red, blue) if orientation == 6 else (blue, red)
    assert np.abs(top - want_top).max() < 40 and np.abs(bottom - want_bottom).max() < 40


def test_malformed_exif_does_not_sink_the_image():
    exif = _exif(6)
    exif[0x010F] = "cam"  # Make, ASCII
    data = _save(Image.fromarray(_noise(8, 16)), "JPEG", exif=exif)
    # Relabel the ASCII Make entry as RowsPerStrip (a numeric tag): re-serialising this
    # EXIF (what ImageOps.exif_transpose does) raises struct.error.
    assert data.count(b"\x01\x0f\x00\x02") == 1
    img = load_image(data.replace(b"\x01\x0f\x00\x02", b"\x01\x16\x00\x02"))
    _assert_rgb(img, (16, 8))
    assert "EXIF orientation 6 applied" in img.conversions


def test_invalid_orientation_is_noted_not_applied():
    a = _noise(4, 6)
    img = load_image(_save(Image.fromarray(a), "PNG", exif=_exif(9)))
    np.testing.assert_array_equal(img.array, a)
    assert any("invalid EXIF orientation 9" in n for n in img.notes)


def test_extension_mismatch_loads_with_note(tmp_path):
    path = tmp_path / "photo.png"
    path.write_bytes(_save(Image.fromarray(_noise()), "JPEG"))
    img = load_image(path)
    assert img.format == "JPEG" and img.path == str(path)
    assert "extension .png but content is JPEG" in img.notes


def test_bytes_and_path_agree(tmp_path):
    a = _noise()
    data = _save(Image.fromarray(a), "PNG")
    path = tmp_path / "same.png"
    path.write_bytes(data)
    from_path, from_bytes = load_image(path), load_image(data)
    np.testing.assert_array_equal(from_path.array, a)
    np.testing.assert_array_equal(from_bytes.array, a)
    assert from_path.n_bytes == from_bytes.n_bytes == len(data)
    assert from_bytes.path == "<bytes>" and from_path.notes == from_bytes.notes == []
    assert load_image(bytearray(data)).width == 64
    assert decode_image(data, path="x.png").path == "x.png"


# --------------------------------------------------------------------------- fuzzing


def _fuzz_seeds() -> list[bytes]:
    a = _noise(24, 32, seed=5)
    im = Image.fromarray(a)
    frames = [Image.new("RGB", (12, 12), c) for c in ("red", "green", "blue")]
    two_pages = [im, Image.fromarray(a[::-1].copy())]
    return [
        _save(im, "PNG"),
        _save(im.convert("P"), "PNG", transparency=3),
        _save(im, "PNG", exif=_exif(6)),
        _save(im, "JPEG", quality=85),
        _save(im, "JPEG", progressive=True, exif=_exif(8)),
        _save(im.convert("CMYK"), "JPEG"),
        _save(im, "GIF"),
        _save(frames[0], "GIF", save_all=True, append_images=frames[1:]),
        _save(im, "WEBP", quality=80),
        _save(im, "WEBP", lossless=True),
        _save(im, "BMP"),
        _save(im.convert("L"), "BMP"),
        _save(im, "TIFF"),
        _save(im, "TIFF", compression="tiff_lzw"),
        _save(im.convert("I;16"), "TIFF"),
        _save(two_pages[0], "TIFF", save_all=True, append_images=two_pages[1:]),
    ]


def _mutate(rng: random.Random, data: bytes) -> bytes:
    d = bytearray(data)
    kind = rng.randrange(5)
    if kind == 0:  # truncate
        return bytes(d[: rng.randrange(1, len(d))])
    if kind in (1, 2):  # overwrite bytes, in the header (1) or anywhere (2)
        hi = min(len(d), 160) if kind == 1 else len(d)
        for _ in range(rng.randint(1, 8)):
            d[rng.randrange(hi)] = rng.randrange(256)
    elif kind == 3:  # insert
        at = rng.randrange(len(d))
        d[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
    else:  # delete
        at = rng.randrange(len(d))
        del d[at : at + rng.randint(1, 64)]
    return bytes(d)


def test_fuzzed_inputs_never_escape():
    """Every outcome is a well-formed image or a typed refusal; nothing else escapes."""
    rng = random.Random(20240501)
    seeds = _fuzz_seeds()
    outcomes: dict[str, int] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the strictest caller: warnings must not escape either
        for i in range(240):
            data = _mutate(rng, seeds[i % len(seeds)])
            try:
                img = load_image(data, max_pixels=4_000_000, name=f"fuzz-{i}.bin")
            except ImageLoadError as e:
                assert e.code in ERROR_CODES
                assert e.path == f"fuzz-{i}.bin"
                outcomes[e.code] = outcomes.get(e.code, 0) + 1
            else:
                a = img.array
                assert a.dtype == np.uint8 and a.ndim == 3 and a.shape[2] == 3 and a.size
                outcomes["ok"] = outcomes.get("ok", 0) + 1
    # The loop exercises both paths (a guard against a fuzzer that tests nothing).
    assert outcomes.get("ok", 0) > 20 and outcomes.get("corrupt", 0) > 20
    assert outcomes.get("truncated", 0) > 20


def test_fuzzed_exif_and_png_chunks_never_escape():
    """Structure-aware: damage EXIF inside JPEG, and PNG chunk bodies with valid CRCs."""
    rng = random.Random(7)
    exif = _exif(6)
    exif[0x010F] = "cam"
    jpeg = _save(Image.fromarray(_noise(8, 12)), "JPEG", exif=exif)
    app1 = jpeg.index(b"Exif\x00\x00")
    rgb = _noise(6, 5)
    raw_rows = b"".join(b"\x00" + rgb[y].tobytes() for y in range(6))
    for i in range(120):
        if i % 2:
            d = bytearray(jpeg)
            for _ in range(rng.randint(1, 4)):
                d[rng.randrange(app1, app1 + 50)] = rng.randrange(256)
            data = bytes(d)
        else:
            ihdr = bytearray(struct.pack(">IIBBBBB", 5, 6, 8, 2, 0, 0, 0))
            idat = bytearray(zlib.compress(raw_rows))
            body = rng.choice([ihdr, idat])
            for _ in range(rng.randint(1, 3)):
                body[rng.randrange(len(body))] = rng.randrange(256)
            data = (
                b"\x89PNG\r\n\x1a\n"
                + _chunk(b"IHDR", bytes(ihdr))
                + _chunk(b"IDAT", bytes(idat))
                + _chunk(b"IEND", b"")
            )
        try:
            img = load_image(data, max_pixels=1_000_000)
        except ImageLoadError as e:
            assert e.code in ERROR_CODES
        else:
            assert img.array.dtype == np.uint8 and img.array.shape[2] == 3


# --------------------------------------------------------------------------- encoding


def test_encode_png_round_trip_is_exact():
    a = _noise()
    img = load_image(encode_image(a, "PNG"))
    assert img.format == "PNG"
    np.testing.assert_array_equal(img.array, a)
    gray = a[..., 0]
    np.testing.assert_array_equal(load_image(encode_image(gray)).array[..., 1], gray)


def test_encode_jpeg_subsampling():
    a = _noise()
    full = encode_image(a, "JPEG", quality=90, subsampling="4:4:4")
    half = encode_image(a, "jpg", quality=90, subsampling="4:2:0")
    assert full != half
    assert JpegImagePlugin.get_sampling(Image.open(io.BytesIO(full))) == 0
    assert JpegImagePlugin.get_sampling(Image.open(io.BytesIO(half))) == 2
    for data in (full, half):
        img = load_image(data)
        assert img.format == "JPEG" and img.array.shape == a.shape


def test_encode_rejects_bad_input():
    with pytest.raises(TypeError):
        encode_image(np.zeros((4, 4, 3), np.float32))
    with pytest.raises(ValueError):
        encode_image(np.zeros((4, 4, 4), np.uint8))
    with pytest.raises(ValueError):
        encode_image(np.zeros((4, 4, 3), np.uint8), "PNG", subsampling="4:4:4")


# --------------------------------------------------------------------------- files and hashes


def test_atomic_write_bytes(tmp_path):
    target = tmp_path / "sub" / "key.bin"
    atomic_write_bytes(target, b"secret", mode=0o600)
    assert target.read_bytes() == b"secret"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert os.listdir(target.parent) == ["key.bin"]  # no temporary file left
    # Rewriting without a mode keeps the existing permissions.
    atomic_write_bytes(target, b"secret2")
    assert stat.S_IMODE(target.stat().st_mode) == 0o600


def test_atomic_write_new_file_follows_umask(tmp_path):
    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "manifest.jsonl", '{"a": 1}\n')
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "manifest.jsonl").stat().st_mode) == 0o644
    assert (tmp_path / "manifest.jsonl").read_text() == '{"a": 1}\n'


def test_atomic_write_failure_keeps_old_file_and_no_temp(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(TypeError):
        atomic_write_bytes(target, 12345)  # type: ignore[arg-type]
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["out.txt"]


def test_sha256_helpers(tmp_path):
    data = bytes(range(256)) * 1000
    path = tmp_path / "blob"
    path.write_bytes(data)
    want = hashlib.sha256(data).hexdigest()
    assert sha256_bytes(data) == want
    assert sha256_file(path) == want
    assert sha256_file(path, chunk=1000) == want
