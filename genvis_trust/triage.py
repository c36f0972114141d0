"""What a folder walk hands to the scanner: media, not the toolkit's own outputs, not other files.

An audit (or ``scan DIR``) is pointed at real folders, which hold more than media: earlier
audits' reports, provenance stores and their SQLite side files, signing keys, notes,
archives, programs. Three outcomes per entry, all decided from content (a few KiB read),
never from the name alone:

- **own output** (:func:`own_output`, :func:`own_output_folder`): written by this toolkit;
  never read, never recorded (counted in the summary). A folder holding an audit's
  ``results.jsonl`` / ``summary.json`` / ``report.html``, a report's page folder, a key
  folder made by ``keys init``, a provenance store (SQLite with the store's tables) and its
  ``-wal`` / ``-shm`` / ``-journal`` files, a report page, a results file copied elsewhere;
- **not media** (:func:`not_media`): recorded as ``skipped`` with the reason (PEM, SQLite,
  HTML, JSON, text, archive, executable, empty, unrecognised binary);
- **media**: everything the scanner reads (images, video, audio, PDF, zip-based documents
  with a C2PA manifest inside, C2PA sidecars), and any file whose name claims such a format:
  a ``.png`` holding text is a broken image, an error record, not a skipped file.

>>> not_media(b"-----BEGIN CERTIFICATE-----\\nMIIB", "ca.pem")
('pem', 'PEM file (certificate or key), not media')
>>> not_media(b"\\x89PNG\\r\\n\\x1a\\n" + bytes(8), "x.dat") is None
True
>>> not_media(b"hello", "notes.png") is None  # named as media: the scanner says what is wrong
True
"""

from __future__ import annotations

import fnmatch
import json
import os
import zipfile
from pathlib import Path

__all__ = ["HEAD_BYTES", "MEDIA_EXTENSIONS", "AUDIT_MARK", "Filter", "not_media", "own_output", "own_output_folder"]

HEAD_BYTES = 8192
#: written into every audit output folder, so a later walk knows it at a glance
AUDIT_MARK = ".genvis-audit"
#: HTML pages of reports carry this in their <head> (report/templates/base.html.j2)
REPORT_GENERATOR = b'<meta name="generator" content="genvis-trust'

# Names that claim a format the toolkit (or c2pa) reads: such a file is scanned whatever it
# holds, so a mislabelled or broken one gets an error record that says so.
MEDIA_EXTENSIONS = frozenset(
    "." + e for e in (
        "jpg jpeg jpe jfif png gif webp bmp dib tif tiff heic heif hif avif jxl svg psd ico jp2 j2k "
        "dng nef arw cr2 cr3 orf rw2 raf "
        "mp4 m4v mov qt avi mkv webm 3gp "
        "mp3 wav m4a flac aac "
        "pdf c2pa docx xlsx pptx docm xlsm pptm odt ods odp odg epub oxps"
    ).split()
)

_SQLITE = b"SQLite format 3\x00"
_STORE_TABLES = (b"CREATE TABLE records (", b"CREATE TABLE meta (key TEXT PRIMARY KEY")
_SIDE_FILES = ("-wal", "-shm", "-journal")
_C2PA_IN_ZIP = "META-INF/content_credential.c2pa"


def _head(path: Path, n: int = HEAD_BYTES) -> bytes | None:
    try:
        with open(path, "rb") as f:
            return f.read(n)
    except OSError:
        return None


def is_store(path: Path, head: bytes | None = None) -> bool:
    """A provenance store (SQLite holding the store's tables), read from its first bytes."""
    head = _head(path, 65536) if head is None or len(head) < 65536 else head
    return bool(head) and head.startswith(_SQLITE) and all(t in head for t in _STORE_TABLES)


def _is_scan_record(line: bytes) -> bool:
    try:
        r = json.loads(line)
    except (ValueError, UnicodeDecodeError):
        return False
    return isinstance(r, dict) and {"schema_version", "input", "verdict"} <= r.keys()


def _is_results(path: Path) -> bool:
    head = _head(path, 1 << 20)
    if not head:
        return False
    return _is_scan_record(head.split(b"\n", 1)[0])


def _is_summary(path: Path) -> bool:
    head = _head(path, 1 << 16)
    return bool(head) and b'"verdicts"' in head and b'"new_this_run"' in head and b'"records"' in head


def _is_keys_json(path: Path) -> bool:
    try:
        d = json.loads(path.read_bytes()[:65536])
    except (OSError, ValueError):
        return False
    return isinstance(d, dict) and {"signer_chain", "signer_key", "signer_sha256"} <= d.keys()


def _is_report_page(head: bytes) -> bool:
    return REPORT_GENERATOR in head[:4096]


def own_output_folder(folder: Path) -> str | None:
    """Why ``folder`` is the toolkit's own output (never walked), or None."""
    if (folder / AUDIT_MARK).is_file():
        return "audit output folder"
    if (folder / "results.jsonl").is_file() and _is_results(folder / "results.jsonl"):
        return "audit output folder (results.jsonl)"
    if (folder / "summary.json").is_file() and _is_summary(folder / "summary.json"):
        return "audit output folder (summary.json)"
    if (folder / "keys.json").is_file() and _is_keys_json(folder / "keys.json"):
        return "signing keys made by `keys init`"
    first = folder / "files" / "000000.html"
    if (folder / "thumbs").is_dir() and first.is_file() and _is_report_page(_head(first) or b""):
        return "audit report pages"
    return None


def own_output(path: Path, head: bytes | None = None) -> str | None:
    """Why the file ``path`` is the toolkit's own output (never read, never recorded), or None."""
    name = path.name
    for side in _SIDE_FILES:
        if name.endswith(side) and len(name) > len(side):
            base = path.with_name(name[: -len(side)])
            if is_store(base):
                return f"provenance store's SQLite {side[1:]} file"
    head = _head(path) if head is None else head
    if not head:
        return None
    if head.startswith(_SQLITE):
        return "provenance store" if is_store(path, head) else None
    if head.lstrip()[:1] == b"<" and _is_report_page(head):
        return "report page written by genvis-trust"
    if head[:1] == b"{" and name.endswith(".jsonl") and _is_scan_record(head.split(b"\n", 1)[0]):
        return "scan results (JSON Lines) written by genvis-trust"
    return None


def _zip_has_c2pa(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as z:
            return _C2PA_IN_ZIP in z.namelist()
    except (OSError, zipfile.BadZipFile, ValueError):
        return False


def _looks_text(head: bytes) -> bool:
    if b"\x00" in head:
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as e:
        if e.start < len(head) - 4:  # a multi-byte character cut at the end of the head is fine
            return False
    return True


def not_media(head: bytes, name: str, path: Path | None = None) -> tuple[str, str] | None:
    """``(code, reason)`` when a file is not media the toolkit reads, from its first bytes
    (and its zip directory for archives); None when it is to be scanned."""
    from genvis_trust.io import sniff_media_type
    from genvis_trust.media.frames import video_media_type

    ext = os.path.splitext(name)[1].lower()
    if ext in MEDIA_EXTENSIONS:
        return None  # named as media: scanned, and its record says if it is not
    media = sniff_media_type(head) or video_media_type(head[:64])
    if media == "application/x-zip":
        if path is not None and _zip_has_c2pa(path):
            return None
        return "archive", "ZIP archive (no C2PA manifest inside), not media"
    if media:
        return None
    if not head:
        return "empty", "empty file, not media"
    h = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    low = h[:512].lower()
    if h.startswith(b"-----BEGIN "):
        return "pem", "PEM file (certificate or key), not media"
    if head.startswith(_SQLITE):
        return "sqlite", "SQLite database, not media"
    if head[:4] in (b"\x37\x7f\x06\x82", b"\x37\x7f\x06\x83") or head[:8] == b"\xd9\xd5\x05\xf9\x20\xa1\x63\xd7":
        return "sqlite", "SQLite journal or write-ahead log, not media"
    if head.startswith(b"\x7fELF") or head[:2] == b"MZ" or head[:4] in (
            b"\xfe\xed\xfa\xce", b"\xfe\xed\xfa\xcf", b"\xce\xfa\xed\xfe", b"\xcf\xfa\xed\xfe", b"\xca\xfe\xba\xbe"):
        return "executable", "executable program, not media"
    if head.startswith(b"#!"):
        return "executable", "script (#!), not media"
    if head[:2] == b"\x1f\x8b" or head.startswith((b"7z\xbc\xaf\x27\x1c", b"Rar!\x1a\x07", b"BZh", b"\xfd7zXZ\x00",
                                                   b"\x28\xb5\x2f\xfd")) or head[257:262] == b"ustar":
        return "archive", "compressed file or archive, not media"
    if low.startswith((b"<!doctype html", b"<html")) or b"<html" in low[:256]:
        return "html", "HTML document, not media"
    if _looks_text(head):
        if h[:1] in (b"{", b"["):
            try:
                json.loads(head)
                return "json", "JSON document, not media"
            except (ValueError, UnicodeDecodeError):
                first = h.split(b"\n", 1)[0]
                try:
                    json.loads(first)
                    return "json", "JSON document, not media"
                except (ValueError, UnicodeDecodeError):
                    pass
        if low.startswith(b"<?xml"):
            return "text", "XML document, not media"
        return "text", "text file, not media"
    return "binary", "unrecognised binary file, not a media format the toolkit reads"


class Filter:
    """``--include`` / ``--exclude`` globs on the path below the walked folder. A pattern with a
    ``/`` matches the whole relative path (``*`` crosses folders), one without matches any
    single path component, so ``--exclude cache`` drops every folder named cache.

    >>> f = Filter(include=["*.jpg"], exclude=["tmp"])
    >>> f.wants_file("a/b.jpg"), f.wants_file("a/b.png"), f.wants_file("tmp/b.jpg"), f.wants_folder("x/tmp")
    (True, False, False, False)
    """

    def __init__(self, include: list[str] | tuple[str, ...] = (), exclude: list[str] | tuple[str, ...] = ()):
        self.include = tuple(p.strip() for p in include if p.strip())
        self.exclude = tuple(p.strip() for p in exclude if p.strip())

    def __bool__(self) -> bool:
        return bool(self.include or self.exclude)

    @staticmethod
    def _match(rel: str, pattern: str) -> bool:
        pattern = pattern.rstrip("/")
        if "/" in pattern:
            return fnmatch.fnmatchcase(rel, pattern.lstrip("/")) or fnmatch.fnmatchcase(rel, pattern.lstrip("/") + "/*")
        return any(fnmatch.fnmatchcase(part, pattern) for part in rel.split("/"))

    def wants_folder(self, rel: str) -> bool:
        return not any(self._match(rel, p) for p in self.exclude)

    def wants_file(self, rel: str) -> bool:
        if any(self._match(rel, p) for p in self.exclude):
            return False
        if not self.include:
            return True
        name = rel.rsplit("/", 1)[-1]
        return any(fnmatch.fnmatchcase(rel, p) if "/" in p else fnmatch.fnmatchcase(name, p) for p in self.include)
