"""The corpus folder: images + ``manifest.jsonl`` + ``card.json``.

One manifest record per image::

    {"path": "images/000/000000.png", "sha256": "...", "bytes": 2101, "width": 32,
     "height": 32, "label": "real", "source": "builtin-photos", "key": "...",
     "group": "astronaut", "class_id": null, "family": null, "seed": null,
     "checkpoint_sha256": null, "provenance": null, "meta": {...}}

A video corpus (``generate MODEL --video``) holds H.264 clips (``images/000/000000.mp4``)
with ``meta.media`` = ``video/mp4`` and the clip's frames, fps and seeds in ``meta``.

Image-to-image corpora (inpainting) add ``"mask": "masks/000/000000.png"`` and
``"mask_sha256"``: an 8-bit grey PNG of the image's size, 255 where pixels were
regenerated and 0 where they are the source photograph's (:meth:`Corpus.load_mask`).

Writing streams (constant memory), writes each image atomically before its manifest
line, and resumes an interrupted corpus. Reading refuses paths that leave the corpus
root and files whose sha256 does not match, naming the record.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from genvis_trust import __version__
from genvis_trust.atomic import atomic_write_bytes, atomic_write_text
from genvis_trust.io import (
    ImageLoadError,
    encode_image,
    load_image,
    read_bytes,
    sha256_bytes,
    sha256_file,
    sniff_format,
    sniff_media_type,
)

from .base import LABELS, SPLITS, Item, Sample, Source, SourceError

MANIFEST = "manifest.jsonl"
CARD = "card.json"
CORPUS_FORMAT = 1
_FORMATS = {"PNG": ".png", "JPEG": ".jpg", "WEBP": ".webp"}
_DATA_EXT = {**_FORMATS, "GIF": ".gif", "BMP": ".bmp", "TIFF": ".tif", "MP4": ".mp4"}  # MP4: generated clips
_SHA256 = re.compile(r"[0-9a-f]{64}")


class CorpusError(ValueError):
    """A corpus that cannot be trusted: names the corpus, the record line and the problem."""


@dataclass
class CorpusRecord:
    line: int  # 1-based line in manifest.jsonl
    data: dict[str, Any]

    def __getitem__(self, k):
        return self.data[k]

    def get(self, k, default=None):
        return self.data.get(k, default)


class CorpusWriter:
    """Stream samples into a corpus folder.

    >>> import tempfile, numpy as np
    >>> d = tempfile.mkdtemp()
    >>> with CorpusWriter(d, card={"about": "doctest"}) as w:
    ...     _ = w.add(np.zeros((4, 4, 3), np.uint8), label="real", source="zeros")
    >>> len(read_corpus(d))
    1
    """

    def __init__(
        self,
        root: str | os.PathLike,
        *,
        card: dict[str, Any] | None = None,
        image_format: str = "PNG",
        jpeg_quality: int = 95,
        resume: bool = False,
        overwrite: bool = False,
    ):
        self.root = Path(root)
        self.image_format = image_format.upper().replace("JPG", "JPEG")
        if self.image_format not in _FORMATS:
            raise CorpusError(f"image_format must be one of {sorted(_FORMATS)}, got {image_format!r}")
        self.jpeg_quality = jpeg_quality
        self.card = dict(card or {})
        manifest = self.root / MANIFEST
        self.count = 0
        self._labels: dict[str, int] = {}
        if manifest.exists() and not (resume or overwrite):
            raise CorpusError(
                f"{self.root}: a corpus already exists here; pass resume=True to continue it "
                "or overwrite=True to replace it"
            )
        self.root.mkdir(parents=True, exist_ok=True)
        if manifest.exists() and overwrite:
            manifest.unlink()
            (self.root / CARD).unlink(missing_ok=True)
            # old images beyond the new count would linger as files no record names
            _remove_written_images(self.root)
        if manifest.exists():
            self._resume(manifest)
        self._fh = open(manifest, "a", encoding="utf-8")
        self._t0 = time.time()
        self._write_card(complete=False)  # a crash leaves a card saying what was being written

    def _check_resumable(self) -> None:
        """Resuming is only sound when the new stream is the one the corpus was started with."""
        path = self.root / CARD
        if not path.is_file():
            return
        try:
            old = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise CorpusError(f"{path}: not valid JSON ({e.msg}); cannot resume") from None
        if old.get("image_format", self.image_format) != self.image_format:
            raise CorpusError(
                f"{self.root}: cannot resume: corpus images are {old['image_format']}, "
                f"asked for {self.image_format}"
            )
        # fields the resuming writer does not restate (e.g. the generator that wrote the
        # corpus) are kept: a resume must never lose what the card said
        known = {"format", "toolkit_version", "images", "labels", "image_format", "complete", "written_at"}
        for k, v in old.items():
            if k not in known:
                self.card.setdefault(k, v)
        if "data" in old and "data" in self.card:
            new = json.loads(json.dumps(self.card["data"], default=str))  # as the card stores it
            if old["data"] != new:
                raise CorpusError(
                    f"{self.root}: cannot resume: the corpus was written from {old['data']}, "
                    f"not {new}"
                )

    def _resume(self, manifest: Path) -> None:
        raw = manifest.read_bytes()
        if raw and not raw.endswith(b"\n"):  # a crash mid-line: drop the partial record
            raw = raw[: raw.rfind(b"\n") + 1]
            atomic_write_bytes(manifest, raw)
        for i, line in enumerate(raw.decode("utf-8").splitlines(), 1):
            if line.strip():
                try:
                    label = json.loads(line)["label"]
                except (json.JSONDecodeError, TypeError, KeyError):
                    raise CorpusError(f"{manifest}:{i}: not a valid record; cannot resume") from None
                self.count += 1
                self._labels[label] = self._labels.get(label, 0) + 1
        self._check_resumable()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, *_):
        self.close(complete=exc_type is None)

    def add(
        self,
        image: np.ndarray,
        *,
        label: str,
        source: str,
        key: str | None = None,
        group: str | None = None,
        class_id: int | None = None,
        family: str | None = None,
        seed: int | None = None,
        checkpoint_sha256: str | None = None,
        provenance: dict | None = None,
        meta: dict | None = None,
        data: bytes | None = None,
        mask: np.ndarray | None = None,
    ) -> dict[str, Any]:
        """Write one image (or pre-encoded ``data``) and its manifest record; returns the record.

        ``mask`` (H x W, bool or uint8, non-zero = regenerated) is written as a PNG beside
        the image and named in the record."""
        if label not in LABELS:
            raise CorpusError(f"label must be one of {LABELS}, got {label!r}")
        idx = self.count
        if data is None:
            sub = "4:4:4" if self.image_format == "JPEG" else None  # full chroma: no JPEG blur on colour
            data = encode_image(image, self.image_format, quality=self.jpeg_quality, subsampling=sub)
            ext = _FORMATS[self.image_format]
        else:  # the extension follows the bytes, never a caller-supplied name
            fmt = sniff_format(data) or ("MP4" if sniff_media_type(data) == "video/mp4" else None)
            if fmt not in _DATA_EXT:
                raise CorpusError(f"{key or idx}: data is not an image this toolkit writes ({fmt})")
            ext = _DATA_EXT[fmt]
        rel = f"images/{idx // 1000:03d}/{idx:06d}{ext}"
        atomic_write_bytes(self.root / rel, data)
        h, w = (int(image.shape[0]), int(image.shape[1])) if image is not None else (None, None)
        mask_rec = {}
        if mask is not None:
            m = np.asarray(mask)
            if m.ndim != 2 or (image is not None and m.shape != tuple(image.shape[:2])):
                raise CorpusError(
                    f"{key or idx}: mask must be H x W matching the image "
                    f"{tuple(image.shape[:2]) if image is not None else ''}, got {m.shape}"
                )
            mdata = encode_image(np.where(m > 0, 255, 0).astype(np.uint8), "PNG")
            mrel = f"masks/{idx // 1000:03d}/{idx:06d}.png"
            atomic_write_bytes(self.root / mrel, mdata)
            mask_rec = {"mask": mrel, "mask_sha256": sha256_bytes(mdata)}
        rec = {
            "path": rel,
            "sha256": sha256_bytes(data),
            "bytes": len(data),
            "width": w,
            "height": h,
            "label": label,
            "source": source,
            "key": key if key is not None else str(idx),
            "group": group,
            "class_id": None if class_id is None else int(class_id),
            "family": family,
            "seed": seed,
            "checkpoint_sha256": checkpoint_sha256,
            "provenance": provenance,
            "meta": meta or {},
            **mask_rec,
        }
        self._fh.write(json.dumps(rec, sort_keys=True) + "\n")
        self._fh.flush()
        self.count += 1
        self._labels[label] = self._labels.get(label, 0) + 1
        return rec

    def add_sample(self, s: Sample, **extra) -> dict[str, Any]:
        label = extra.pop("label", s.label)
        if label is None:
            raise CorpusError(f"sample {s.key} has no label; pass label='real' or 'generated'")
        return self.add(
            s.image,
            label=label,
            source=extra.pop("source", s.source),
            key=s.key,
            group=s.group,
            class_id=s.class_id,
            meta={**s.meta, **extra.pop("meta", {})},
            **extra,
        )

    def close(self, complete: bool = True) -> None:
        if self._fh.closed:
            return
        os.fsync(self._fh.fileno())
        self._fh.close()
        self._write_card(complete)

    def _write_card(self, complete: bool) -> None:
        card = {
            "format": CORPUS_FORMAT,
            "toolkit_version": __version__,
            "images": self.count,
            "labels": self._labels,
            "image_format": self.image_format,
            "complete": complete,
            "written_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            **self.card,
        }
        atomic_write_text(self.root / CARD, json.dumps(card, indent=2, sort_keys=True) + "\n")


_WRITTEN_IMAGE = re.compile(
    r"(images/[0-9]{3}/[0-9]{6}(" + "|".join(re.escape(e) for e in set(_DATA_EXT.values())) + "))"
    r"|(masks/[0-9]{3}/[0-9]{6}\.png)"
)


def _remove_written_images(root: Path) -> None:
    """Delete the image and mask files a :class:`CorpusWriter` names
    (``images/NNN/NNNNNN.ext``, ``masks/NNN/NNNNNN.png``), recorded or left by a crash, and
    the folders that leaves empty; anything else a user put there stays."""
    for top in ("images", "masks"):
        folder = root / top
        if not folder.is_dir() or folder.is_symlink():
            continue
        for dirpath, _, filenames in os.walk(folder, topdown=False):
            for f in filenames:
                p = Path(dirpath, f)
                if _WRITTEN_IMAGE.fullmatch(p.relative_to(root).as_posix()) and not p.is_symlink():
                    p.unlink()
            try:
                os.rmdir(dirpath)
            except OSError:
                pass  # not empty: holds files the writer did not make


def write_corpus(root, samples: Iterable[Sample], *, card: dict | None = None, **kw) -> int:
    """Write all ``samples`` to a new corpus; returns the number written."""
    with CorpusWriter(root, card=card, **kw) as w:
        for s in samples:
            w.add_sample(s)
        return w.count


class Corpus:
    """A corpus read back: ``records`` (manifest order) and ``card``."""

    def __init__(self, root: Path, records: list[CorpusRecord], card: dict[str, Any]):
        self.root = root
        self.records = records
        self.card = card

    def __len__(self) -> int:
        return len(self.records)

    def file(self, rec: CorpusRecord) -> Path:
        return safe_join(self.root, rec["path"], f"{self.root / MANIFEST}:{rec.line}")

    def mask_file(self, rec: CorpusRecord) -> Path | None:
        """The record's mask path (inside the corpus root), or None when it has none."""
        if not rec.get("mask"):
            return None
        return safe_join(self.root, rec["mask"], f"{self.root / MANIFEST}:{rec.line}")

    def load_mask(self, rec: CorpusRecord) -> np.ndarray | None:
        """The record's mask as an H x W bool array (True = regenerated), or None."""
        p = self.mask_file(rec)
        if p is None:
            return None
        where = f"{self.root / MANIFEST}:{rec.line} ({rec['mask']})"
        if not p.is_file():
            raise CorpusError(f"{where}: mask file is missing")
        data = read_bytes(p)
        if rec.get("mask_sha256") and sha256_bytes(data) != rec["mask_sha256"]:
            raise CorpusError(f"{where}: mask sha256 mismatch")
        arr = load_image(data, name=str(p)).array
        if arr.ndim == 3:
            arr = arr[..., 0]
        return arr > 127

    def verify(self, *, hashes: bool = True) -> list[str]:
        """Check every record's file exists (and its sha256); raise CorpusError on the first bad one."""
        for rec in self.records:
            where = f"{self.root / MANIFEST}:{rec.line} ({rec['path']})"
            p = self.file(rec)
            if not p.is_file():
                raise CorpusError(f"{where}: file is missing")
            if hashes:
                actual = sha256_file(p)
                if actual != rec["sha256"]:
                    raise CorpusError(
                        f"{where}: sha256 mismatch: manifest says {rec['sha256'][:16]}…, "
                        f"file is {actual[:16]}…"
                    )
        return []

    def summary(self) -> dict[str, Any]:
        labels: dict[str, int] = {}
        families: dict[str, int] = {}
        for r in self.records:
            labels[r["label"]] = labels.get(r["label"], 0) + 1
            fam = r.get("family") or r.get("source")
            families[fam] = families.get(fam, 0) + 1
        return {"root": str(self.root), "images": len(self), "labels": labels, "by_family": families}


_REQUIRED = ("path", "sha256", "label")


def read_corpus(root: str | os.PathLike, *, verify: bool = True, hashes: bool = True) -> Corpus:
    """Read a corpus folder; with ``verify`` check paths, presence and (``hashes``) sha256."""
    root = Path(root)
    manifest = root / MANIFEST
    if not manifest.is_file():
        raise CorpusError(f"{root}: not a corpus (no {MANIFEST})")
    records = []
    seen: dict[Path, int] = {}
    with open(manifest, encoding="utf-8") as f:
        for i, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                data = json.loads(line)
            except json.JSONDecodeError as e:
                raise CorpusError(f"{manifest}:{i}: not valid JSON ({e.msg})") from None
            if not isinstance(data, dict) or any(k not in data for k in _REQUIRED):
                raise CorpusError(f"{manifest}:{i}: record lacks one of {_REQUIRED}")
            if data["label"] not in LABELS:
                raise CorpusError(f"{manifest}:{i}: label must be one of {LABELS}, got {data['label']!r}")
            if not isinstance(data["sha256"], str) or not _SHA256.fullmatch(data["sha256"]):
                raise CorpusError(f"{manifest}:{i}: sha256 must be 64 lowercase hex digits")
            rec = CorpusRecord(i, data)
            target = safe_join(root, data["path"], f"{manifest}:{i}")  # reject escapes even without verify
            if target in seen:
                raise CorpusError(f"{manifest}:{i}: path {data['path']!r} is already line {seen[target]}")
            seen[target] = i
            records.append(rec)
    card: dict[str, Any] = {}
    if (root / CARD).is_file():
        try:
            card = json.loads((root / CARD).read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise CorpusError(f"{root / CARD}: not valid JSON ({e.msg})") from None
    corpus = Corpus(root, records, card)
    if verify:
        corpus.verify(hashes=hashes)
    return corpus


def safe_join(root: Path, rel: str, where: str) -> Path:
    """``root / rel``, refusing absolute paths and anything resolving outside ``root``."""
    if not isinstance(rel, str) or not rel:
        raise CorpusError(f"{where}: path must be a non-empty string")
    if rel.startswith(("/", "\\")) or (len(rel) > 1 and rel[1] == ":") or "\x00" in rel:
        raise CorpusError(f"{where}: path {rel!r} is absolute; manifest paths must be relative")
    base = root.resolve()
    target = (base / rel).resolve()
    if not target.is_relative_to(base):
        raise CorpusError(f"{where}: path {rel!r} leaves the corpus root")
    return target


class CorpusSource(Source):
    """A corpus as a data source: labels, classes and groups come from the manifest.

    Splits: records carrying ``meta.split`` keep it only when ``keep_splits``; by default
    groups are re-assigned with ``fractions``/``seed`` like any other source.
    """

    name = "corpus"
    description = "a corpus folder written by this toolkit (manifest.jsonl + card.json)"

    def __init__(
        self,
        root,
        *,
        verify: bool = True,
        label: str | None = None,
        keep_splits: bool = False,
        **options,
    ):
        if label not in (None, *LABELS):
            raise SourceError(f"label must be one of {LABELS} or None, got {label!r}")
        super().__init__(**options)
        self.keep_splits = keep_splits
        self.root = Path(root)
        self.corpus = read_corpus(self.root, verify=verify)
        self.label_override = label
        self.name = f"corpus:{self.root.name}"

    def spec(self):
        return {**super().spec(), "root": str(self.root), "keep_splits": self.keep_splits}

    def list_items(self) -> list[Item]:
        items = []
        for rec in self.corpus.records:
            path = self.corpus.file(rec)
            split = None
            if self.keep_splits:
                split = (rec.get("meta") or {}).get("split")
                if split is not None and split not in SPLITS:
                    raise SourceError(
                        f"{self.root / MANIFEST}:{rec.line}: meta.split must be one of {SPLITS}, "
                        f"got {split!r}"
                    )
            items.append(
                Item(
                    key=rec["path"],
                    group=rec.get("group") or rec["path"],
                    load=_Loader(path, rec["sha256"]),
                    label=self.label_override or rec["label"],
                    class_id=rec.get("class_id"),
                    split=split,
                    meta={
                        "family": rec.get("family"),
                        "path": rec["path"],
                        "source": rec.get("source"),
                        "origin": (rec.get("meta") or {}).get("origin"),
                        "aligned_to": (rec.get("meta") or {}).get("aligned_to"),
                    },
                )
            )
        return items


class _Loader:
    """Load a corpus file, checking its hash at load time too (files can change after listing)."""

    def __init__(self, path: Path, sha: str):
        self.path, self.sha = path, sha

    def __call__(self) -> np.ndarray:
        data = read_bytes(self.path)  # a vanished file is an ImageLoadError, recorded, not a crash
        if sha256_bytes(data) != self.sha:
            raise ImageLoadError("corrupt", "sha256 differs from the corpus manifest", str(self.path))
        return load_image(data, name=str(self.path)).array


__all__ = [
    "CARD",
    "MANIFEST",
    "Corpus",
    "CorpusError",
    "CorpusRecord",
    "CorpusSource",
    "CorpusWriter",
    "SourceError",
    "read_corpus",
    "safe_join",
    "write_corpus",
]
