#!/usr/bin/env python3
"""Build the ``photos-native`` corpus: real photographs at native resolution, with origins.

    python scripts/build_photo_corpus.py --out ~/.cache/genvis-trust/photos-native \
        [--github-mirror DIR] [--debian-dir DIR]

Collects, byte for byte (no re-encoding, no resizing):
- classic real-photo test sets vendored by public GitHub repositories, pinned by commit
  (``GITHUB_SETS``); a repository is read from ``--github-mirror DIR/owner+name/repo`` (a bare
  git dir) when given, else cloned (needs network to GitHub);
- the camera photographs among Debian wallpaper packages (``DEBIAN_PHOTOS``), pinned by
  package version and sha256; downloaded with ``apt-get download`` and unpacked with
  ``dpkg-deb -x`` into ``--debian-dir`` (a temporary folder by default).

Every record's ``meta.origin`` names repository + commit + path (or package + version + path)
and ``meta.licence`` the licence. Splits are fixed per photograph (``meta.split``, 70/15/15 by
a stable hash of the origin) so derived corpora (reconstructions) inherit them. Sources that
are reserved for independent evaluation are refused (``genvis_trust.datasets.photos``).
A file whose bytes no longer match its pinned sha256 is reported and skipped.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from genvis_trust.datasets.base import stable_int
from genvis_trust.datasets.corpus import CorpusWriter
from genvis_trust.datasets.photos import check_not_reserved
from genvis_trust.io import ImageLoadError, load_image

HERE = Path(__file__).resolve().parent

# Classic real-photo test sets. Licences as their publishers state them; none is bundled:
# this script rebuilds the corpus on the user's machine.
GITHUB_SETS = [
    {
        "set": "kodak24",
        "repository": "cszn/FFDNet",
        "commit": "e787f46df2f374ff3591186706229cb9a0591fea",
        "dir": "testsets/Kodak24",
        "licence": "Kodak Lossless True Color Image Suite (PhotoCD PCD0992), released by Eastman Kodak for unrestricted use; this copy is centre-cropped to 500x500 by the vendoring repository",
    },
    {
        "set": "cbsd68",
        "repository": "cszn/FFDNet",
        "commit": "e787f46df2f374ff3591186706229cb9a0591fea",
        "dir": "testsets/CBSD68",
        "licence": "Berkeley Segmentation Dataset (BSDS300) test images: free for non-commercial research and educational use (Corel photographs)",
    },
    {
        "set": "mcmaster",
        "repository": "cszn/FFDNet",
        "commit": "e787f46df2f374ff3591186706229cb9a0591fea",
        "dir": "testsets/McMaster",
        "licence": "McMaster colour demosaicking data set (Zhang, Wu, Buades, Li, 2011): research use, no explicit licence",
    },
]

# Folders of camera photographs vendored by public repositories (issue 24), pinned by commit;
# ``exclude``: files in the folder that are not photographs (screenshots, logos, scans of
# artwork, blank test files), found by looking at every candidate; ``min_bytes``: smaller
# files are thumbnails or metadata-only test files; ``skip_ids_in``: a set already collected
# whose photographs this folder also holds (skipped, so a photograph is in one split only);
# ``group``: how near-duplicates (the same scene re-saved, rotated, HDR on/off) are grouped,
# so that a group lands in one split. Files of 4 MiB and more may be absent from a snapshot
# (``git show`` fails): skipped and counted.
GITHUB_FOLDERS = [
    {
        "set": "imagenet-samples",
        "repository": "EliSchwartz/imagenet-sample-images",
        "commit": "bc69043e2862758a1906c6a24a792bb28c6bb2ff",
        "dir": "",
        "licence": "one ImageNet (ILSVRC 2012) image per class as vendored by EliSchwartz/imagenet-sample-images (no licence file); "
                   "ImageNet terms: non-commercial research and educational use; each photograph keeps its own copyright",
    },
    {
        "set": "bsds500",
        "repository": "BIDS/BSDS500",
        "commit": "a04b7c6c3a9f0ace74bf205c72a43d32e1c72722",
        "dir": "BSDS500/data/images",
        "skip_ids_in": "cbsd68",
        "licence": "Berkeley Segmentation Data Set 500 (Arbelaez et al., 2011): free for non-commercial research and educational use (Corel photographs)",
    },
    {
        "set": "exif-samples",
        "repository": "ianare/exif-samples",
        "commit": "5332a9cf0220e9c6c93f88a187daa90808051e10",
        "dir": "jpg",
        "min_bytes": 100_000,
        "exclude": ["jpg/corrupted.jpg", "jpg/invalid/image00971.jpg", "jpg/tests/67-0_length_string.jpg", "jpg/xmp/no_exif.jpg"],
        "exclude_prefix": ["jpg/orientation/landscape_", "jpg/orientation/portrait_"],
        "include": ["jpg/orientation/landscape_1.jpg"],  # one of the 16 rotations of the same photograph
        "group": {"jpg/hdr/canon_hdr_": "canon_hdr", "jpg/hdr/iphone_hdr_": "iphone_hdr"},
        "licence": "ianare/exif-samples (repository licence CC BY-SA 4.0 per the issue's check); most images from Wikimedia Commons, each with its own licence (jpg/README)",
    },
    {
        "set": "exifr-fixtures",
        "repository": "MikeKovarik/exifr",
        "commit": "6cbf6e921688faf7723e1f2e0b9e672d1f0aa21c",
        "dir": "test/fixtures",
        "min_bytes": 40_000,
        "exclude": [
            "test/fixtures/001.tif", "test/fixtures/002.tiff", "test/fixtures/BonTonARTSTORplusIPTC.jpg", "test/fixtures/cookiezen.jpg",
            "test/fixtures/issue-exif-js-124.tiff", "test/fixtures/issue-exifr-13.jpg", "test/fixtures/issue-exifr-3.jpg",
            "test/fixtures/issue-metadata-extractor-65.jpg", "test/fixtures/iptc-agency-photographer-example.jpg",
            "test/fixtures/iptc-independent-photographer-example.jpg", "test/fixtures/iptc-staff-photographer-example.jpg",
            "test/fixtures/32d08f4a5eb10332506ebedbb9bc7257.jpg",
        ],
        "exclude_prefix": ["test/fixtures/png/", "test/fixtures/avif/"],
        "group": {"test/fixtures/IMG_20180725_163423": "IMG_20180725_163423", "test/fixtures/Bush-dog": "Bush-dog",
                  "test/fixtures/issue-metadata-extractor-152": "issue-metadata-extractor-152"},
        "licence": "MikeKovarik/exifr test fixtures (MIT repository licence); photographs collected from bug reports, each with its own copyright",
    },
]

# Single real photographs vendored by public repositories (pinned by commit and sha256).
GITHUB_PHOTOS_FILE = HERE / "github_photos.json"
# Camera photographs found among Debian wallpaper packages (the rest are renders and artwork).
DEBIAN_PHOTOS_FILE = HERE / "debian_photos.json"

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp"}
SPLIT_SHARES = (("train", 70), ("val", 15), ("test", 15))


def split_of(key: str) -> str:
    """A stable split per photograph (70/15/15)."""
    r = stable_int("photos-native", key) % 100
    acc = 0
    for name, share in SPLIT_SHARES:
        acc += share
        if r < acc:
            return name
    return "test"


def git_dir(repo: str, mirror: Path | None, workdir: Path) -> Path:
    """A bare git dir of ``repo``: from the mirror folder when it has one, else a clone."""
    if mirror is not None and (mirror / repo.replace("/", "+") / "repo").is_dir():
        return mirror / repo.replace("/", "+") / "repo"
    gitdir = workdir / repo.replace("/", "+")
    if not gitdir.exists():
        subprocess.run(["git", "clone", "--bare", "--filter=blob:none", f"https://github.com/{repo}", str(gitdir)], check=True)
    return gitdir


def git_blob(repo: str, commit: str, path: str, mirror: Path | None, workdir: Path) -> bytes:
    gitdir = git_dir(repo, mirror, workdir)
    return subprocess.run(["git", "--git-dir", str(gitdir), "show", f"{commit}:{path}"], check=True, capture_output=True).stdout


def git_files(repo: str, commit: str, folder: str, mirror: Path | None, workdir: Path, *, missing_ok: bool = False):
    """Yield (path, bytes) of the image files under ``folder`` at ``commit``; with
    ``missing_ok``, (path, None) for a file whose blob the snapshot lacks."""
    gitdir = git_dir(repo, mirror, workdir)
    args = ["git", "--git-dir", str(gitdir), "ls-tree", "-r", "--name-only", commit] + ([folder] if folder else [])
    names = subprocess.run(args, check=True, capture_output=True, text=True).stdout.split("\n")
    for name in sorted(n for n in names if Path(n).suffix.lower() in IMAGE_SUFFIXES):
        r = subprocess.run(["git", "--git-dir", str(gitdir), "show", f"{commit}:{name}"], capture_output=True)
        if r.returncode != 0 and missing_ok:
            yield name, None
            continue
        r.check_returncode()
        yield name, r.stdout


def folder_group(spec: dict, path: str, key: str) -> str:
    """The near-duplicate group of a file of a ``GITHUB_FOLDERS`` entry (default: the file itself)."""
    for prefix, group in (spec.get("group") or {}).items():
        if path.startswith(prefix):
            return f"{spec['set']}/{group}"
    return key


def folder_selected(spec: dict, path: str, size: int, skip_ids: set[str]) -> str | None:
    """Why a file of a ``GITHUB_FOLDERS`` entry is left out, or None when it is collected."""
    if path in spec.get("include", []):
        return None
    if path in spec.get("exclude", []) or any(path.startswith(p) for p in spec.get("exclude_prefix", [])):
        return "not a photograph, or a duplicate of one kept (looked at)"
    if size < spec.get("min_bytes", 0):
        return f"under {spec['min_bytes']} bytes"
    if Path(path).stem in skip_ids:
        return f"already collected in {spec['skip_ids_in']}"
    return None


def debian_files(entries: list[dict], workdir: Path):
    """Yield (entry, bytes) for each pinned Debian photograph, downloading each package once."""
    unpacked: dict[str, Path] = {}
    for e in entries:
        key = f"{e['package']}={e['version']}"
        if key not in unpacked:
            dest = workdir / key.replace("=", "_")
            if not dest.exists():
                dl = workdir / "debs"
                dl.mkdir(parents=True, exist_ok=True)
                subprocess.run(["apt-get", "download", key], check=True, cwd=dl, capture_output=True)
                deb = next(dl.glob(f"{e['package']}_*.deb"))
                subprocess.run(["dpkg-deb", "-x", str(deb), str(dest)], check=True)
            unpacked[key] = dest
        f = unpacked[key] / e["deb_path"].lstrip("/")
        yield e, f.read_bytes() if f.is_file() else None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="the corpus folder to write")
    ap.add_argument("--github-mirror", type=Path, help="folder of bare git dirs named owner+name/repo")
    ap.add_argument("--debian-dir", type=Path, help="where Debian packages are downloaded and unpacked")
    ap.add_argument("--no-debian", action="store_true", help="skip the Debian photographs")
    ap.add_argument("--force", action="store_true", help="replace an existing corpus at --out")
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="gvt-photos-"))
    workdir = args.debian_dir or tmp
    card = {
        "about": "real photographs at native resolution, byte for byte from their origins",
        "command": "python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
        "splits": "per photograph, 70/15/15 by a stable hash of its key, or of its near-duplicate group's (meta.split)",
    }
    errors, counts, skipped = [], {}, {}
    try:
        with CorpusWriter(args.out, card=card, overwrite=args.force) as w:

            seen: dict[str, str] = {}  # sha256 -> key: the same file in two sources is collected once

            def add(data: bytes, origin: dict, licence: str, set_name: str, key: str, expect_sha: str | None = None,
                    group: str | None = None):
                check_not_reserved(origin)
                sha = hashlib.sha256(data).hexdigest()
                if expect_sha and sha != expect_sha:
                    errors.append(f"{key}: sha256 {sha[:12]} differs from the pinned {expect_sha[:12]}: skipped")
                    return
                if sha in seen:
                    skipped.setdefault(set_name, {}).setdefault(f"same bytes as {seen[sha].split('/')[0]}", []).append(key)
                    return
                seen[sha] = key
                try:
                    img = load_image(data, name=key).array
                except ImageLoadError as e:
                    errors.append(f"{key}: {e}")
                    return
                group = group or key
                split = split_of(group)
                w.add(
                    img,
                    data=data,
                    label="real",
                    source=f"photos-native/{set_name}",
                    key=key,
                    group=group,
                    meta={"origin": {**origin, "sha256": sha}, "licence": licence, "split": split, "set": set_name},
                )
                counts[(set_name, split)] = counts.get((set_name, split), 0) + 1

            for s in GITHUB_SETS:
                for path, data in git_files(s["repository"], s["commit"], s["dir"], args.github_mirror, tmp):
                    origin = {"repository": s["repository"], "commit": s["commit"], "path": path}
                    add(data, origin, s["licence"], s["set"], f"{s['set']}/{Path(path).name}")
            pinned: dict[tuple[str, str], list[dict]] = {}
            for e in json.loads(GITHUB_PHOTOS_FILE.read_text(encoding="utf-8")):
                pinned.setdefault((e["repository"], e["commit"]), []).append(e)
            for (repo, commit), entries in pinned.items():
                for e in entries:
                    data = git_blob(repo, commit, e["path"], args.github_mirror, tmp)
                    origin = {"repository": repo, "commit": commit, "path": e["path"]}
                    add(data, origin, e["licence"], e["set"], f"{e['set']}/{Path(e['path']).name}", e["sha256"])
            for s in GITHUB_FOLDERS:
                gitdir = git_dir(s["repository"], args.github_mirror, tmp)
                sizes = dict(
                    (ln.split("\t")[1], ln.split("\t")[0].split()[3])
                    for ln in subprocess.run(["git", "--git-dir", str(gitdir), "ls-tree", "-r", "-l", s["commit"]] + ([s["dir"]] if s["dir"] else []),
                                             check=True, capture_output=True, text=True).stdout.splitlines()
                )
                skip_ids = set()
                if s.get("skip_ids_in"):
                    skip_ids = {Path(k).stem for k in seen.values() if k.startswith(s["skip_ids_in"] + "/")}
                for path, size in sorted(sizes.items()):
                    if Path(path).suffix.lower() not in IMAGE_SUFFIXES:
                        continue
                    key = f"{s['set']}/{path[len(s['dir']):].lstrip('/')}"
                    if not size.isdigit():  # the snapshot lists the file but lacks its bytes (>= 4 MiB)
                        skipped.setdefault(s["set"], {}).setdefault("absent from the snapshot (>= 4 MiB)", []).append(key)
                        continue
                    why = folder_selected(s, path, int(size), skip_ids)
                    if why:
                        skipped.setdefault(s["set"], {}).setdefault(why, []).append(key)
                        continue
                    data = git_blob(s["repository"], s["commit"], path, args.github_mirror, tmp)
                    origin = {"repository": s["repository"], "commit": s["commit"], "path": path}
                    add(data, origin, s["licence"], s["set"], key, group=folder_group(s, path, key))
            if not args.no_debian and DEBIAN_PHOTOS_FILE.is_file():
                entries = json.loads(DEBIAN_PHOTOS_FILE.read_text(encoding="utf-8"))
                for e, data in debian_files(entries, workdir):
                    key = f"debian/{e['package']}/{Path(e['deb_path']).name}"
                    if data is None:
                        errors.append(f"{key}: not in {e['package']} {e['version']}")
                        continue
                    origin = {"package": e["package"], "version": e["version"], "path": e["deb_path"]}
                    add(data, origin, e["licence"], f"debian-{e['package']}", key, e.get("sha256"))
    finally:
        if args.debian_dir is None:
            shutil.rmtree(tmp, ignore_errors=True)  # our own temporary folder only
    for (name, split), n in sorted(counts.items()):
        print(f"{name:28s} {split:5s} {n}")
    for name, whys in sorted(skipped.items()):
        for why, keys in sorted(whys.items()):
            print(f"skipped {name:20s} {len(keys):4d}  {why}")
    for e in errors:
        print(f"error: {e}", file=sys.stderr)
    print(f"wrote {sum(counts.values())} photographs to {args.out} ({len(errors)} errors)")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
