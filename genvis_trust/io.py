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
import struct
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

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
}

# Formats Pillow decodes that we accept. Content decides, not the file name.
SUPPORTED_FORMATS = ("JPEG", "PNG", "GIF", "WEBP", "BMP", "TIFF")


class ImageLoadError(Exception):
    """A refused image: ``code`` is one of :data:`ERROR_CODES`, ``path`` names the input."""

    def __init__(self, code: str, message: str, path: str = "<bytes>"):
        assert code in ERROR_CODES, code
        self.code = code
        self.path = path
        self.message = message
        super().__init__(f"{path}: {message} [{code}]")

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
    """
    head = data[:64]
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    if head[:2] == b"BM":
        return "BMP"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "TIFF"
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in (b"avif", b"avis"):
            return "AVIF"
        if brand in (b"heic", b"heix", b"hevc", b"mif1", b"msf1", b"heim", b"heis"):
            return "HEIC"
        return None
    if head.startswith(b"\xff\x0a") or head.startswith(b"\x00\x00\x00\x0cJXL "):
        return "JXL"
    if head.startswith(b"8BPS"):
        return "PSD"
    if head[:4] == b"\x00\x00\x01\x00":
        return "ICO"
    if head.startswith(b"\x00\x00\x00\x0cjP  "):
        return "JPEG2000"
    text = head.lstrip().lower()
    if text.startswith(b"<svg") or (text.startswith(b"<?xml") and b"<svg" in data[:1024].lower()):
        return "SVG"
    return None


def read_bytes(path: str | os.PathLike, max_bytes: int = DEFAULT_MAX_BYTES) -> bytes:
    """Read a whole file, refusing what is missing, not a regular file, or too big."""
    p = Path(path)
    name = str(p)
    try:
        st = p.stat()
    except FileNotFoundError:
        raise ImageLoadError("not_found", "file not found", name) from None
    except OSError as e:
        raise ImageLoadError("unreadable", f"cannot stat: {e.strerror}", name) from None
    if not p.is_file():
        raise ImageLoadError("unreadable", "not a regular file", name)
    if st.st_size > max_bytes:
        raise ImageLoadError(
            "too_large", f"file is {st.st_size} bytes, limit is {max_bytes}", name
        )
    try:
        with open(p, "rb") as f:
            return f.read(max_bytes + 1)
    except OSError as e:
        raise ImageLoadError("unreadable", f"cannot read: {e.strerror}", name) from None


def load_image(
    source: str | os.PathLike | bytes,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_bytes: int = DEFAULT_MAX_BYTES,
    name: str | None = None,
) -> LoadedImage:
    """Decode an image from a path or bytes into RGB uint8, or raise :class:`ImageLoadError`.

    ``name`` labels the input in errors when ``source`` is bytes.
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        path = name or "<bytes>"
        if len(data) > max_bytes:
            raise ImageLoadError("too_large", f"{len(data)} bytes, limit is {max_bytes}", path)
    else:
        path = name or str(source)
        data = read_bytes(source, max_bytes)
    return decode_image(data, path=path, max_pixels=max_pixels)


def decode_image(data: bytes, *, path: str = "<bytes>", max_pixels: int = DEFAULT_MAX_PIXELS) -> LoadedImage:
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

    try:
        with warnings.catch_warnings():
            # Pillow warns (not raises) between MAX_IMAGE_PIXELS and 2x; we decide ourselves.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(_io.BytesIO(data), formats=[fmt])
            width, height = im.size
            if width <= 0 or height <= 0:
                raise ImageLoadError("corrupt", f"invalid dimensions {width}x{height}", path)
            if width * height > max_pixels:
                raise ImageLoadError(
                    "too_large",
                    f"{width}x{height} = {width * height} pixels exceeds limit {max_pixels} "
                    "(possible decompression bomb)",
                    path,
                )
            n_frames = getattr(im, "n_frames", 1)
            if n_frames > 1:
                im.seek(0)
                notes.append(f"animated: {n_frames} frames, first frame used")
            im.load()
    except ImageLoadError:
        raise
    except Image.DecompressionBombError as e:
        raise ImageLoadError("too_large", f"decompression bomb: {e}", path) from None
    except UnidentifiedImageError:
        raise ImageLoadError("corrupt", f"{fmt} header could not be parsed", path) from None
    except (OSError, EOFError, SyntaxError, ValueError, IndexError, struct.error) as e:
        msg = str(e) or type(e).__name__
        code = "truncated" if _looks_truncated(msg, e) else "corrupt"
        raise ImageLoadError(code, f"cannot decode {fmt}: {msg}", path) from None

    mode = im.mode
    conversions: list[str] = []
    try:
        orientation = im.getexif().get(0x0112, 1)
    except Exception:  # a malformed EXIF block must not sink a decodable image
        orientation = 1
        notes.append("EXIF block unreadable; orientation not applied")
    if orientation not in (1, None):
        im = ImageOps.exif_transpose(im)
        conversions.append(f"EXIF orientation {orientation} applied")
    arr = _to_rgb_uint8(im, conversions)
    return LoadedImage(
        array=np.ascontiguousarray(arr),
        format=fmt,
        mode=mode,
        path=path,
        conversions=conversions,
        notes=notes,
        n_bytes=len(data),
    )


def _looks_truncated(msg: str, exc: BaseException) -> bool:
    m = msg.lower()
    return isinstance(exc, EOFError) or any(
        k in m for k in ("truncated", "end of file", "broken data stream", "unexpected end", "premature")
    )


_EXT = {
    "JPEG": {"jpg", "jpeg", "jpe", "jfif"},
    "PNG": {"png"},
    "GIF": {"gif"},
    "WEBP": {"webp"},
    "BMP": {"bmp", "dib"},
    "TIFF": {"tif", "tiff"},
}


def _extension_matches(ext: str, fmt: str) -> bool:
    return ext in _EXT.get(fmt, {fmt.lower()})


def _to_rgb_uint8(im: Image.Image, conversions: list[str]) -> np.ndarray:
    mode = im.mode
    if mode == "RGB":
        return np.asarray(im, dtype=np.uint8)
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        a = np.asarray(im).astype(np.float64)
        peak = 65535.0 if mode.startswith("I;16") or (a.size and a.max() > 255) else 255.0
        if mode in ("I", "F") and a.size and a.max() > 65535:
            peak = float(a.max())
        g = np.clip(np.round(a / peak * 255.0), 0, 255).astype(np.uint8)
        conversions.append(f"{mode} (high bit depth grayscale) scaled to 8-bit, grayscale to RGB")
        return np.repeat(g[..., None], 3, axis=2)
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        alpha = np.asarray(rgba)[..., 3]
        has_alpha_values = bool(alpha.size and alpha.min() < 255)
        conversions.append(
            f"{mode} to RGB: alpha channel discarded"
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


# --------------------------------------------------------------------------- encoding


def encode_image(
    array: np.ndarray,
    fmt: str = "PNG",
    *,
    quality: int = 95,
    subsampling: str | int | None = None,
) -> bytes:
    """Encode an RGB uint8 array. ``subsampling`` for JPEG: ``"4:4:4"``, ``"4:2:2"``, ``"4:2:0"``."""
    fmt = fmt.upper().replace("JPG", "JPEG")
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
    return a


# --------------------------------------------------------------------------- atomic output


def atomic_write_bytes(path: str | os.PathLike, data: bytes, mode: int | None = None) -> None:
    """Write ``data`` to ``path`` so readers see the old file or the new one, never half.

    ``mode`` sets permissions on the temporary file *before* any byte is written (keys: 0o600).
    """
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
    try:
        if mode is not None:
            os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, p)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def atomic_write_text(path: str | os.PathLike, text: str, mode: int | None = None) -> None:
    atomic_write_bytes(path, text.encode("utf-8"), mode=mode)


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


IMAGE_EXTENSIONS = frozenset(
    {"." + e for exts in _EXT.values() for e in exts} | {".heic", ".avif", ".jxl"}
)
