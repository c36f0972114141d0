#!/usr/bin/env python3
"""Collect camera originals (many makes) for measuring metadata false positives.

    python scripts/collect_camera_originals.py --mirror /work/.mirror --out /tmp/camera-originals

Copies, byte for byte, the camera images vendored by public repositories whose snapshots sit
in ``--mirror`` as bare git dirs (``owner+name/repo``, what the ``fetch`` tool or a
``git clone --mirror`` leaves), and writes ``manifest.jsonl``: one record per file with
repository, commit, path, licence, sha256 and the EXIF make/model read from it. Nothing is
bundled in this repository. Sources reserved for independent evaluation are refused.

The set is what ``benchmarks/metadata_markers.py`` measures; the files are camera photographs
(some rescaled or re-saved by the repository's author, which the record notes) and a few phone
HEIC/AVIF files; test files made to break parsers (``invalid/``, ``corrupted``) are left out.
"""

from __future__ import annotations

import argparse
import fnmatch
import hashlib
import io
import json
import subprocess
import sys
from pathlib import Path

from genvis_trust.datasets.photos import check_not_reserved

SOURCES = [
    {
        "repository": "ianare/exif-samples",
        "include": ["jpg/*.jpg", "jpg/exif-org/*.jpg", "jpg/gps/*.jpg", "jpg/hdr/*.jpg", "jpg/mobile/*.jpg",
                    "jpg/tests/*.jpg", "jpg/tests/*.jpeg", "heic/*", "heic/mobile/*", "tiff/*.tiff"],
        "exclude": ["jpg/corrupted.jpg", "jpg/invalid/*", "*README*", "*.DS_Store"],
        "licence": "CC BY-SA 4.0 (user contributions) / Wikimedia Commons photographs under their own "
                   "licences, rescaled with GIMP by the repository's author (see its README)",
    },
    {
        "repository": "MikeKovarik/exifr",
        "include": ["test/fixtures/*.jpg", "test/fixtures/*.jpeg", "test/fixtures/*.tif", "test/fixtures/*.tiff",
                    "test/fixtures/*.heic", "test/fixtures/*.HEIC", "test/fixtures/avif/*.avif",
                    "test/fixtures/png/*.png", "test/fixtures/orientation/*.jpg", "test/fixtures/sidecar/*.jpg"],
        "exclude": ["*RangeError*", "*broken*", "*Unreachable*", "*heic-empty*", "*noexif*", "*no_exif*"],
        "licence": "MIT (exifr test fixtures)",
    },
    {
        "repository": "exiftool/exiftool",
        # the test images named after a camera make (pixels stripped, the camera's metadata kept);
        # the ones written by ExifTool's own tests (ExifTool, Writer, XMP, IPTC, ...) are left out
        "include": [f"t/images/{m}.jpg" for m in (
            "Apple", "Canon", "Canon1DmkIII", "Casio", "Casio2", "CasioQVCI", "FLIR", "FujiFilm", "GE", "GoPro",
            "Google", "InfiRay", "JVC", "JVC2", "Kodak", "Minolta", "Motorola", "Nikon", "NikonD2Hs", "NikonD70",
            "Olympus", "Olympus2", "OlympusE1", "Panasonic", "Pentax", "Ricoh", "Ricoh2", "Sanyo", "Sigma",
            "Sony")],
        "exclude": [],
        "licence": "Perl Artistic License or GPL (ExifTool distribution, t/images)",
    },
]


def _git(git_dir: Path, *args: str) -> bytes:
    return subprocess.run(["git", f"--git-dir={git_dir}", *args], check=True, capture_output=True).stdout


def _make_model(data: bytes) -> tuple[str, str]:
    from PIL import Image

    try:
        im = Image.open(io.BytesIO(data))
        ex = im.getexif()
        return str(ex.get(0x010F, "")).strip("\x00 "), str(ex.get(0x0110, "")).strip("\x00 ")
    except Exception:
        return "", ""


def collect(mirror: Path, out: Path) -> list[dict]:
    out.mkdir(parents=True, exist_ok=True)
    records = []
    for src in SOURCES:
        check_not_reserved({"repository": src["repository"]})
        git_dir = mirror / src["repository"].replace("/", "+") / "repo"
        if not git_dir.is_dir():
            print(f"skipped {src['repository']}: no snapshot at {git_dir}", file=sys.stderr)
            continue
        commit = _git(git_dir, "rev-parse", "HEAD").decode().strip()
        paths = _git(git_dir, "ls-tree", "-r", "-z", "--name-only", commit).decode().split("\0")
        for path in sorted(p for p in paths if p):
            if not any(fnmatch.fnmatchcase(path, g) for g in src["include"]):
                continue
            if any(fnmatch.fnmatchcase(path, g) for g in src["exclude"]):
                continue
            try:
                data = _git(git_dir, "show", f"{commit}:{path}")
            except subprocess.CalledProcessError:  # a snapshot may list its largest files without them
                print(f"skipped {src['repository']}:{path}: not in the snapshot", file=sys.stderr)
                continue
            name = src["repository"].replace("/", "+") + "__" + path.replace("/", "__")
            (out / name).write_bytes(data)
            make, model = _make_model(data)
            records.append({"file": name, "repository": src["repository"], "commit": commit, "path": path,
                            "licence": src["licence"], "sha256": hashlib.sha256(data).hexdigest(),
                            "bytes": len(data), "make": make, "model": model})
    with open(out / "manifest.jsonl", "w") as f:
        for r in records:
            f.write(json.dumps(r) + "\n")
    return records


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mirror", type=Path, default=Path("/work/.mirror"), help="folder of owner+name/repo bare git dirs")
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args(argv)
    recs = collect(a.mirror, a.out)
    makes = {r["make"].split()[0].lower() for r in recs if r["make"]}
    print(f"{len(recs)} files from {len({r['repository'] for r in recs})} repositories, "
          f"{len(makes)} makes; manifest: {a.out / 'manifest.jsonl'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
