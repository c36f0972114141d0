"""Safe image loading and atomic file output.

Every stage that reads an image goes through :func:`load_image`. It sniffs the real
format from the bytes (never the extension), checks size limits *before* decoding,
applies EXIF orientation, and converts every colour mode to one defined form: an
``H x W x 3`` ``uint8`` RGB array. What it converted is reported, never hidden.

Refusals are :class:`ImageLoadError` with a short machine code (see ``ERROR_CODES``)
and a message naming the file.

>>> import numpy as np
>>> img = load_image(encode_image(np.zeros((8, 8, 3), np.uint8), "PNG"))
>>> img.array.shape, img.format
((8, 8, 3), 'PNG')
"""

from __future__ import annotations

import hashlib
import io as _io
import os
import stat
import struct
import warnings
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, UnidentifiedImageError

# Never let Pillow half-decode a truncated file and hand back grey pixels.
ImageFile.LOAD_TRUNCATED_IMAGES = False

DEFAULT_MAX_PIXELS = 64_000_000  # 64 MP: an 8000x8000 photo; raise it explicitly for more
DEFAULT_MAX_BYTES = 200 * 1024 * 1024

ERROR_CODES = {
    "not_found": "the file does not exist",
    "unreadable": "the file could not be read (permissions, a folder, a device)",
    "empty": "the file has zero bytes",
    "not_an_image": "the content is not an image",
    "unsupported_format": "an image format this toolkit does not decode",
    "too_large": "the file or its decoded pixels exceed the configured limits",
    "truncated": "the image data ends early",
    "corrupt": "the image data is malformed",
    "no_frames": "a video with no video stream or no decodable frame",
}

# Formats Pillow decodes that we accept. Content decides, not the file name. HEIC/HEIF
# through the pillow-heif plugin, AVIF through Pillow's own decoder (Pillow >= 11.2).
SUPPORTED_FORMATS = ("JPEG", "PNG", "GIF", "WEBP", "BMP", "TIFF", "HEIC", "AVIF")
# Our format name -> the Pillow plugin that opens it, where they differ.
_PIL_FORMAT = {"HEIC": "HEIF"}


class ImageLoadError(Exception):
    """A refused image: ``code`` is one of :data:`ERROR_CODES`, ``path`` names the input."""

    def __init__(self, code: str, message: str, path: str = "<bytes>"):
        if code not in ERROR_CODES:
            raise ValueError(f"unknown ImageLoadError code {code!r}")
        self.code = code
        self.path = path
        self.message = message
        super().__init__(f"{path}: {message} [{code}]")

    def __reduce__(self):
        # The default reduce replays ``args`` (the formatted text) into __init__, which
        # fails; batch workers (multiprocessing, Ray) must be able to send errors back.
        return (type(self), (self.code, self.message, self.path))

    def to_dict(self) -> dict:
        return {"code": self.code, "message": self.message, "path": self.path}


@dataclass
class LoadedImage:
    """A decoded image in the one form every stage uses."""

    array: np.ndarray  # H x W x 3, uint8, RGB, C-contiguous
    format: str  # sniffed from content: JPEG, PNG, ...
    mode: str  # Pillow mode before conversion
    path: str = "<bytes>"
    conversions: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    n_bytes: int = 0

    @property
    def width(self) -> int:
        return int(self.array.shape[1])

    @property
    def height(self) -> int:
        return int(self.array.shape[0])


def sniff_format(data: bytes) -> str | None:
    """Name the image format from its magic bytes, or ``None`` when not recognised.

    Returns names of formats we decode (``SUPPORTED_FORMATS``) and of image formats we
    recognise but refuse (``HEIC``, ``AVIF``, ``JXL``, ``SVG``, ``PSD``, ``ICO``, ...).

    >>> sniff_format(b"\\x89PNG\\r\\n\\x1a\\n" + bytes(8)), sniff_format(b"hello")
    ('PNG', None)
    """
    head = bytes(data[:64])
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    # "BM" alone is two printable letters; also require a known DIB header size.
    if head[:2] == b"BM" and int.from_bytes(head[14:18], "little") in _BMP_DIB_SIZES:
        return "BMP"
    if head[:4] in _TIFF_PREFIXES:
        return "TIFF"
    if head[4:8] == b"ftyp":
        box_end = min(max(int.from_bytes(head[:4], "big"), 16), len(head))
        brands = {head[8:12]} | {head[i : i + 4] for i in range(16, box_end - 3, 4)}
        if brands & {b"avif", b"avis"}:
            return "AVIF"
        if brands & {b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1"}:
            return "HEIC"
        return None
    if head.startswith(b"\xff\x0a") or head.startswith(b"\x00\x00\x00\x0cJXL "):
        return "JXL"
    if head.startswith(b"8BPS"):
        return "PSD"
    if head[:4] == b"\x00\x00\x01\x00":
        return "ICO"
    if head.startswith(b"\x00\x00\x00\x0cjP  ") or head.startswith(b"\xff\x4f\xff\x51"):
        return "JPEG2000"
    text = bytes(data[:1024]).lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if text.startswith(b"<svg") or (
        text.startswith((b"<?xml", b"<!doctype svg", b"<!--")) and b"<svg" in text
    ):
        return "SVG"
    return None


_BMP_DIB_SIZES = {12, 16, 40, 52, 56, 64, 108, 124}
# Classic TIFF, BigTIFF, and the swapped prefixes Pillow also accepts.
_TIFF_PREFIXES = {b"II*\x00", b"MM\x00*", b"II\x00*", b"MM*\x00", b"II+\x00", b"MM\x00+"}


def read_bytes(
    path: str | os.PathLike, max_bytes: int = DEFAULT_MAX_BYTES, *, name: str | None = None
) -> bytes:
    """Read a whole file, refusing what is missing, not a regular file, or too big.

    ``name`` labels the file in errors (default: the path).
    """
    try:
        p = Path(path)
    except TypeError:
        raise TypeError(f"expected a path or bytes, got {type(path).__name__}") from None
    label = name or str(p)
    try:
        st = p.stat()
    except FileNotFoundError:
        what = "is a symbolic link to a file that does not exist" if p.is_symlink() else "does not exist"
        missing_parent = str(p.parent) not in ("", ".") and not p.parent.exists()
        raise ImageLoadError("not_found", f"file {what}" + (f" (nor does the folder {p.parent})"
                                                           if missing_parent else ""), label) from None
    except ValueError as e:  # e.g. an embedded NUL byte
        raise ImageLoadError("unreadable", f"invalid path: {e}", label) from None
    except OSError as e:
        raise ImageLoadError("unreadable", f"cannot stat: {e.strerror or e}", label) from None
    if stat.S_ISDIR(st.st_mode):
        raise ImageLoadError("unreadable", "is a folder, not a file", label)
    if not stat.S_ISREG(st.st_mode):
        raise ImageLoadError("unreadable", "not a regular file (a device, pipe or socket)", label)
    if st.st_size > max_bytes:
        raise ImageLoadError(
            "too_large", f"file is {st.st_size} bytes, limit is {max_bytes}", label
        )
    try:
        with open(p, "rb") as f:
            data = f.read(max_bytes + 1)
    except OSError as e:
        raise ImageLoadError("unreadable", f"cannot read: {e.strerror or e}", label) from None
    if len(data) > max_bytes:  # the file grew after stat()
        raise ImageLoadError("too_large", f"file exceeds the limit of {max_bytes} bytes", label)
    return data


def load_image(
    source: str | os.PathLike | bytes,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_bytes: int = DEFAULT_MAX_BYTES,
    name: str | None = None,
) -> LoadedImage:
    """Decode an image from a path or bytes into RGB uint8, or raise :class:`ImageLoadError`.

    ``name`` labels the input in errors and in ``LoadedImage.path`` (default: the path,
    or ``"<bytes>"``).
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        path = name or "<bytes>"
        if len(data) > max_bytes:
            raise ImageLoadError("too_large", f"{len(data)} bytes, limit is {max_bytes}", path)
    else:
        data = read_bytes(source, max_bytes, name=name)
        path = name or str(Path(source))
    return decode_image(data, path=path, max_pixels=max_pixels)


# What Pillow's decoders raise on malformed input (found by fuzzing, see tests/test_io.py).
_DECODE_ERRORS = (
    OSError,
    EOFError,
    SyntaxError,
    ValueError,
    TypeError,
    LookupError,
    ArithmeticError,
    struct.error,
    zlib.error,
    RecursionError,
)


def decode_image(
    data: bytes, *, path: str = "<bytes>", max_pixels: int = DEFAULT_MAX_PIXELS
) -> LoadedImage:
    """Decode image bytes (see :func:`load_image`); ``path`` only labels the input."""
    data = bytes(data)
    if len(data) == 0:
        raise ImageLoadError("empty", "file is empty (0 bytes)", path)
    fmt = sniff_format(data)
    if fmt is None:
        raise ImageLoadError("not_an_image", "content is not a recognised image format", path)
    if fmt not in SUPPORTED_FORMATS:
        raise ImageLoadError("unsupported_format", f"{fmt} images are not supported", path)

    notes: list[str] = []
    ext = Path(path).suffix.lower().lstrip(".") if path != "<bytes>" else ""
    if ext and not _extension_matches(ext, fmt):
        notes.append(f"extension .{ext} but content is {fmt}")

    # Pillow reports recoverable damage (bad EXIF, odd tags) as warnings: keep them as
    # notes instead of printing them, and never let a warnings-as-errors filter turn
    # them into exceptions that escape the typed error.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            im, high_bit_raw = _open_first_frame(data, fmt, path, max_pixels, notes)
            im.load()
        except ImageLoadError:
            raise
        except Image.DecompressionBombError as e:
            raise ImageLoadError("too_large", _bomb_message(e, max_pixels), path) from None
        except MemoryError:
            raise ImageLoadError("too_large", "not enough memory to decode", path) from None
        except UnidentifiedImageError:
            short = _ends_early(fmt, data)
            if short:
                raise ImageLoadError(
                    "truncated", f"{fmt} header incomplete: {short}", path
                ) from None
            raise ImageLoadError("corrupt", f"{fmt} header could not be parsed", path) from None
        except _DECODE_ERRORS as e:
            msg = str(e) or type(e).__name__
            short = _ends_early(fmt, data)
            cut = _decode_cut_jpeg(data, path, max_pixels, short) if fmt == "JPEG" and short else None
            if cut is None:
                code = "truncated" if short or _looks_truncated(msg, e) else "corrupt"
                detail = f" ({short})" if short else ""
                raise ImageLoadError(code, f"cannot decode {fmt}: {msg}{detail}", path) from None
            im, high_bit_raw, cut_note = cut
            notes.append(cut_note)
        except Exception as e:  # a decoder bug must still be a typed refusal, not a crash
            raise ImageLoadError(
                "corrupt", f"cannot decode {fmt}: unexpected {type(e).__name__}: {e}", path
            ) from e

        mode = im.mode
        conversions: list[str] = []
        im = _apply_orientation(im, conversions, notes)
        if high_bit_raw and not mode.startswith(("I", "F")):
            conversions.append(f"16 bits per channel ({high_bit_raw}) reduced to 8 bits")
        try:
            arr = _to_rgb_uint8(im, conversions)
        except (ValueError, OSError) as e:
            raise ImageLoadError(
                "unsupported_format", f"cannot convert {fmt} mode {mode} to RGB: {e}", path
            ) from None
        short = _ends_early(fmt, data)
        if short and not any(n.startswith(_CUT_NOTE) for n in notes):
            notes.append(f"pixels decoded completely but the file looks cut short: {short}")
    for w in caught:
        text = f"decoder warning: {w.message}".strip()
        if not issubclass(w.category, Image.DecompressionBombWarning) and text not in notes:
            notes.append(text)
    return LoadedImage(
        array=np.ascontiguousarray(arr),
        format=fmt,
        mode=mode,
        path=path,
        conversions=conversions,
        notes=notes,
        n_bytes=len(data),
    )


_CUT_NOTE = "JPEG data missing at its end"


def _decode_cut_jpeg(
    data: bytes, path: str, max_pixels: int, short: str
) -> tuple[Image.Image, str, str] | None:
    """Decode a JPEG whose end is missing as far as its data goes (what every viewer shows),
    or ``None`` when nothing decodes. The decoder fills what is missing; decoding a second
    time with other filler shows which rows came from the file: the note says how many did not.
    """
    try:
        im, raw = _open_first_frame(data + b"\xff\xd9", "JPEG", path, max_pixels, [])
        im.load()
    except ImageLoadError:
        raise
    except Exception:  # nothing decodes: the caller reports the truncation
        return None
    a = np.asarray(im)
    b = None
    for filler in (b"\x00" * 512, b"\xff\x00" * 256):  # zero bits, one bits: valid Huffman codes
        try:
            b = np.asarray(Image.open(_io.BytesIO(data + filler + b"\xff\xd9"), formats=["JPEG"]))
            break
        except Exception:
            continue
    h = a.shape[0]
    if b is None or b.shape != a.shape:
        extent = "how much is missing could not be measured"
    else:
        differ = np.flatnonzero((a != b).reshape(h, -1).any(axis=1))
        if differ.size == 0:
            extent = "every row decoded (only the end marker is missing)"
        else:
            first = int(differ[0])
            extent = (f"rows {first}-{h - 1} of the stored image ({h - first} of {h}, "
                      f"{100 * (h - first) / h:.1f}%) are not in the file and were filled by the decoder (to one block row)")
    return im, raw, f"{_CUT_NOTE} ({short}): decoded as far as it goes; {extent}"


def _open_first_frame(
    data: bytes, fmt: str, path: str, max_pixels: int, notes: list[str]
) -> tuple[Image.Image, str]:
    """Open the first frame and check its size before any pixel is decoded."""
    _ensure_plugin(fmt, path)
    pil_fmt = _PIL_FORMAT.get(fmt, fmt)
    try:
        im = Image.open(_io.BytesIO(data), formats=[pil_fmt])
    except Image.DecompressionBombError as e:
        # Pillow's own guard (2x MAX_IMAGE_PIXELS) fired while opening: say it in our terms
        size = _header_size(data, pil_fmt)
        raise ImageLoadError("too_large", _bomb_message(e, max_pixels, size), path) from None
    width, height = im.size
    if width <= 0 or height <= 0:
        raise ImageLoadError("corrupt", f"invalid dimensions {width}x{height}", path)
    if width * height > max_pixels:
        raise ImageLoadError("too_large", _over_limit(width, height, max_pixels), path)
    try:
        n_frames = int(getattr(im, "n_frames", 1))
    except _DECODE_ERRORS as e:
        # Counting walks every frame; a broken later frame must not hide a good first one.
        notes.append(f"could not count frames ({str(e) or type(e).__name__}); first frame used")
        im = Image.open(_io.BytesIO(data), formats=[pil_fmt])
        n_frames = 1
    if n_frames > 1:
        im.seek(0)
        kind = {"TIFF": "multi-page", "JPEG": "multi-picture (MPO)"}.get(fmt, "animated")
        notes.append(f"{kind}: {n_frames} frames, first frame used")
    # The raw mode is only visible before load(); Pillow silently keeps the high byte.
    raw = ""
    for tile in getattr(im, "tile", None) or ():
        args = tile[3] if len(tile) > 3 else None
        raw = (
            args
            if isinstance(args, str)
            else (args[0] if args and isinstance(args[0], str) else "")
        )
        if ";16" in raw:
            break
    return im, (raw if ";16" in raw else "")


_plugins_registered: set[str] = set()


def _ensure_plugin(fmt: str, path: str) -> None:
    """Register the decoder plugin a format needs, once; refuse clearly when it is missing."""
    if fmt in _plugins_registered:
        return
    if fmt == "HEIC":
        try:
            import pillow_heif
        except ImportError:
            raise ImageLoadError(
                "unsupported_format", "HEIC/HEIF needs the pillow-heif package (pip install pillow-heif)", path
            ) from None
        pillow_heif.register_heif_opener()
    elif fmt == "AVIF":
        from PIL import features

        if not features.check("avif"):
            raise ImageLoadError(
                "unsupported_format", "this Pillow build has no AVIF decoder (Pillow >= 11.2 has one)", path
            )
    _plugins_registered.add(fmt)


def sniff_media_type(data: bytes) -> str | None:
    """The MIME type of any media the provenance checks read (images, video, audio, PDF,
    zip-based documents, C2PA sidecars), from magic bytes; ``None`` when not recognised.

    >>> sniff_media_type(b"%PDF-1.7 "), sniff_media_type(b"RIFF\\x00\\x00\\x00\\x00WAVEfmt ")
    ('application/pdf', 'audio/wav')
    """
    head = bytes(data[:64])
    fmt = sniff_format(data)
    if fmt is not None:
        return _IMAGE_MIME.get(fmt, f"image/{fmt.lower()}")
    if head[4:8] in (b"ftyp", b"styp"):  # ISO BMFF; styp opens a DASH media segment
        brand = head[8:12]
        if brand == b"qt  ":
            return "video/quicktime"
        if brand in (b"M4A ", b"M4B ", b"M4P "):
            return "audio/mp4"
        return "video/mp4"
    if head[:4] == b"RIFF":
        return {b"WAVE": "audio/wav", b"AVI ": "video/avi"}.get(head[8:12])
    if head.startswith(b"%PDF-"):
        return "application/pdf"
    if head.startswith(b"ID3") or (len(head) > 1 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0):
        return "audio/mpeg"
    if head.startswith(b"fLaC"):
        return "audio/flac"
    if head.startswith(b"PK\x03\x04"):
        return "application/x-zip"
    if head[4:8] == b"jumb":
        return "application/c2pa"
    return None


_IMAGE_MIME = {"JPEG": "image/jpeg", "PNG": "image/png", "GIF": "image/gif", "WEBP": "image/webp",
               "BMP": "image/bmp", "TIFF": "image/tiff", "HEIC": "image/heic", "AVIF": "image/avif",
               "JXL": "image/jxl", "SVG": "image/svg+xml", "PSD": "image/vnd.adobe.photoshop",
               "ICO": "image/x-icon", "JPEG2000": "image/jp2"}


_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def _apply_orientation(im: Image.Image, conversions: list[str], notes: list[str]) -> Image.Image:
    # Not ImageOps.exif_transpose: it re-serialises the whole EXIF block and raises on
    # malformed tags that have nothing to do with orientation.
    try:
        orientation = im.getexif().get(0x0112, 1)
    except Exception:  # a malformed EXIF block must not sink a decodable image
        notes.append("EXIF block unreadable; orientation not applied")
        return im
    if orientation in (1, None):
        return im
    method = _TRANSPOSE.get(orientation) if isinstance(orientation, int) else None
    if method is None:
        notes.append(f"invalid EXIF orientation {orientation!r} ignored")
        return im
    conversions.append(f"EXIF orientation {orientation} applied")
    return im.transpose(method)


def _over_limit(width: int, height: int, max_pixels: int) -> str:
    return (
        f"image is {width}x{height} = {width * height} pixels ({width * height / 1e6:.0f} MP), over the "
        f"toolkit's limit of {max_pixels} pixels ({max_pixels / 1e6:g} MP) that guards against "
        "decompression bombs; nothing was decoded. If the image is genuine, downscale it, or raise "
        "the limit (max_pixels in the Python API)"
    )


def _header_size(data: bytes, pil_fmt: str) -> tuple[int, int] | None:
    """The size a header declares, read without Pillow's bomb check (nothing is decoded)."""
    try:
        factory = Image.OPEN[pil_fmt][0]
        return tuple(factory(_io.BytesIO(data), None).size)
    except Exception:
        return None


def _bomb_message(e: Exception, max_pixels: int, size: tuple[int, int] | None = None) -> str:
    if size is not None and size[0] * size[1] > max_pixels:
        return _over_limit(size[0], size[1], max_pixels)
    limit = Image.MAX_IMAGE_PIXELS
    what = f"image is {size[0]}x{size[1]} = {size[0] * size[1]} pixels" if size else "image"
    if limit is not None and max_pixels > 2 * limit:
        return (
            f"{what}: refused by Pillow's own decompression-bomb limit (PIL.Image.MAX_IMAGE_PIXELS="
            f"{limit}, applied at twice that) before the toolkit's max_pixels={max_pixels}; "
            "raise PIL.Image.MAX_IMAGE_PIXELS too to decode it"
        )
    return f"{what}: refused as a possible decompression bomb ({e})"


def _looks_truncated(msg: str, exc: BaseException) -> bool:
    # Not "broken data stream": that is libImaging's IMAGING_CODEC_BROKEN, bad data.
    m = msg.lower()
    return isinstance(exc, EOFError) or any(
        k in m for k in ("truncated", "end of file", "unexpected end", "premature")
    )


def _ends_early(fmt: str, data: bytes) -> str | None:
    """Why the container looks cut short (its own framing ends past the data), or None."""
    n = len(data)
    if fmt == "PNG":
        pos = 8
        while True:
            if pos + 8 > n:
                return "no IEND chunk"
            length = int.from_bytes(data[pos : pos + 4], "big")
            if length > 0x7FFFFFFF:
                return None  # malformed length, not a short file
            end = pos + 12 + length
            if end > n:
                ctype = data[pos + 4 : pos + 8].decode("latin-1")
                return f"{ctype} chunk needs {end} bytes, file has {n}"
            if data[pos + 4 : pos + 8] == b"IEND":
                return None
            pos = end
    if fmt == "JPEG":
        return _jpeg_ends_early(data)
    if fmt == "GIF":
        return None if data.endswith(b";") else "no GIF trailer"
    if fmt == "WEBP":
        need = 8 + int.from_bytes(data[4:8], "little")
        return f"RIFF header declares {need} bytes, file has {n}" if need > n else None
    if fmt == "BMP":
        need = max(int.from_bytes(data[2:6], "little"), int.from_bytes(data[10:14], "little") + 1)
        return f"header declares {need} bytes, file has {n}" if need > n else None
    if fmt == "TIFF":
        big = data[2:4] in (b"+\x00", b"\x00+")
        order = "little" if data[:2] == b"II" else "big"
        head = 16 if big else 8
        if n < head:
            return "header incomplete"
        ifd = int.from_bytes(data[8:16] if big else data[4:8], order)
        count_size, entry_size, next_size = (8, 20, 8) if big else (2, 12, 4)
        if ifd + count_size > n:
            return f"first IFD at byte {ifd}, file has {n}"
        count = int.from_bytes(data[ifd : ifd + count_size], order)
        need = ifd + count_size + count * entry_size + next_size
        return f"first IFD needs {need} bytes, file has {n}" if need > n else None
    return None


def _jpeg_ends_early(data: bytes) -> str | None:
    n, pos = len(data), 2
    while pos < n:
        if data[pos] != 0xFF:
            return None  # not a marker where one must be: malformed, not short
        while pos < n and data[pos] == 0xFF:
            pos += 1
        if pos >= n:
            break
        marker = data[pos]
        pos += 1
        if marker == 0xD9:
            return None
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:
            continue
        if pos + 2 > n:
            break
        seg_end = pos + int.from_bytes(data[pos : pos + 2], "big")
        if seg_end > n:
            return f"marker 0xFF{marker:02X} segment needs {seg_end} bytes, file has {n}"
        pos = seg_end
        if marker == 0xDA:  # entropy-coded data: only EOI ends it for good
            return None if data.find(b"\xff\xd9", pos) >= 0 else "no EOI marker after scan data"
    return "no EOI marker"


_EXT = {
    "JPEG": {"jpg", "jpeg", "jpe", "jfif"},
    "PNG": {"png"},
    "GIF": {"gif"},
    "WEBP": {"webp"},
    "BMP": {"bmp", "dib"},
    "TIFF": {"tif", "tiff"},
    "HEIC": {"heic", "heif", "hif"},
    "AVIF": {"avif"},
}


def _extension_matches(ext: str, fmt: str) -> bool:
    return ext in _EXT.get(fmt, {fmt.lower()})


def _to_rgb_uint8(im: Image.Image, conversions: list[str]) -> np.ndarray:
    mode = im.mode
    if mode == "RGB" and "transparency" not in im.info:
        return np.asarray(im, dtype=np.uint8)
    if mode.startswith("I;16") or mode in ("I", "F"):
        return _high_bit_depth_gray(im, conversions)
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        mode in ("P", "L", "RGB") and "transparency" in im.info
    ):
        rgba = im.convert("RGBA")
        alpha = np.asarray(rgba)[..., 3]
        has_alpha_values = bool(alpha.size and alpha.min() < 255)
        what = "alpha channel" if mode not in ("P", "L", "RGB") else "transparency"
        conversions.append(
            f"{mode} to RGB: {what} discarded"
            + (" (image had transparent pixels)" if has_alpha_values else "")
        )
        return np.asarray(rgba, dtype=np.uint8)[..., :3].copy()
    labels = {
        "L": "grayscale to RGB",
        "1": "bilevel to RGB",
        "P": "palette to RGB",
        "CMYK": "CMYK to RGB (naive, no ICC profile applied)",
        "YCbCr": "YCbCr to RGB",
        "LAB": "LAB to RGB",
        "HSV": "HSV to RGB",
    }
    conversions.append(labels.get(mode, f"{mode} to RGB"))
    return np.asarray(im.convert("RGB"), dtype=np.uint8)


def _high_bit_depth_gray(im: Image.Image, conversions: list[str]) -> np.ndarray:
    mode = im.mode
    a = np.asarray(im).astype(np.float64)
    finite = a[np.isfinite(a)]
    top = float(finite.max()) if finite.size else 0.0
    if mode.startswith("I;16"):
        peak = 65535.0
    else:
        # 32-bit int / float samples carry no declared range: the scale is a guess from
        # the data, and the conversion note says which one was used.
        peak = next(
            (p for p in ((1.0,) if mode == "F" else ()) + (255.0, 65535.0) if top <= p), top
        )
    clipped = bool(finite.size and finite.min() < 0) or finite.size != a.size
    g = np.clip(np.round(np.nan_to_num(a) / peak * 255.0), 0, 255).astype(np.uint8)
    conversions.append(
        f"{mode} (high bit depth grayscale) scaled to 8-bit (0..{peak:g} -> 0..255)"
        + (", negative or non-finite values clipped" if clipped else "")
        + ", grayscale to RGB"
    )
    return np.repeat(g[..., None], 3, axis=2)


# --------------------------------------------------------------------------- encoding


def encode_image(
    array: np.ndarray,
    fmt: str = "PNG",
    *,
    quality: int = 95,
    subsampling: str | int | None = None,
) -> bytes:
    """Encode an RGB uint8 array. ``subsampling`` for JPEG: ``"4:4:4"``, ``"4:2:2"``, ``"4:2:0"``."""
    fmt = {"JPG": "JPEG", "TIF": "TIFF"}.get(fmt.upper(), fmt.upper())
    if subsampling is not None and fmt != "JPEG":
        raise ValueError(f"subsampling applies to JPEG only, not {fmt}")
    im = Image.fromarray(_as_uint8_rgb(array))
    buf = _io.BytesIO()
    kwargs: dict = {}
    if fmt == "JPEG":
        kwargs["quality"] = int(quality)
        if subsampling is not None:
            kwargs["subsampling"] = subsampling
    elif fmt == "WEBP":
        kwargs["quality"] = int(quality)
    elif fmt == "PNG":
        kwargs["compress_level"] = 6
    im.save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def _as_uint8_rgb(array: np.ndarray) -> np.ndarray:
    a = np.asarray(array)
    if a.dtype != np.uint8:
        raise TypeError(f"expected uint8 image, got {a.dtype}")
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, axis=2)
    if a.ndim != 3 or a.shape[2] != 3:
        raise ValueError(f"expected H x W x 3 image, got shape {a.shape}")
    return np.ascontiguousarray(a)


# --------------------------------------------------------------------------- atomic output
# One helper for every write of an artifact, manifest, report or store: genvis_trust.atomic.
from genvis_trust.atomic import atomic_write_bytes, atomic_write_text  # noqa: E402,F401


def sha256_bytes(data: bytes) -> str:
    """Hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's content, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


# Suffixes a folder scan picks up; refused formats are included so that they are
# reported (unsupported_format), not silently skipped.
IMAGE_EXTENSIONS = frozenset(
    {"." + e for exts in _EXT.values() for e in exts} | {".jxl"}
)
