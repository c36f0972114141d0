#!/usr/bin/env python3
"""Build the development set of outside generators: published samples, pinned by commit.

    python scripts/build_outside_devset.py --github-mirror /work/.mirror --out DATA/outside-dev

Reads ``scripts/outside_devset.json``: one entry per published file (generator label,
repository, commit, path, licence), optionally ``tiles`` (a regular grid of samples inside the
file: ``tile`` [h, w], ``origin`` [y, x], ``step`` [dy, dx], ``grid`` [rows, cols], optional
``n``, the first n tiles in reading order) or ``skip`` (why it is left out: a collage, a
screenshot, training data rather than samples; looked at). Whole files are copied byte for byte;
tiles are cropped from the decoded file and stored as PNG (lossless; the decoded pixels of the
published file, JPEG artefacts included). Writes ``index.jsonl`` (path, generator, repo,
commit, repo_path, licence, sha256, tile) as ``benchmarks/detectors_realworld.py --outside``
reads it, and prints counts per generator and what was skipped.

Sources reserved for independent evaluation (DESIGN.md) are refused. Files of 4 MiB and more
may be absent from a snapshot: skipped and counted.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import cv2

from genvis_trust.datasets.photos import check_not_reserved
from genvis_trust.io import ImageLoadError, load_image

HERE = Path(__file__).resolve().parent
ENTRIES = HERE / "outside_devset.json"


def blob(mirror: Path, repo: str, commit: str, path: str) -> bytes | None:
    r = subprocess.run(["git", "--git-dir", str(mirror / repo.replace("/", "+") / "repo"), "show", f"{commit}:{path}"], capture_output=True)
    return r.stdout if r.returncode == 0 else None


def tiles_of(img, spec: dict):
    """(index, tile) of a regular grid inside ``img`` (RGB array)."""
    (th, tw), (y0, x0), (dy, dx), (rows, cols) = spec["tile"], spec["origin"], spec["step"], spec["grid"]
    k = 0
    for r in range(rows):
        for c in range(cols):
            y, x = y0 + r * dy, x0 + c * dx
            if y + th <= img.shape[0] and x + tw <= img.shape[1] and k < spec.get("n", rows * cols):
                yield k, img[y : y + th, x : x + tw]
                k += 1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--github-mirror", type=Path, required=True, help="folder of bare git dirs named owner+name/repo (the fetch tool's)")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--entries", type=Path, default=ENTRIES)
    args = ap.parse_args()

    args.out.mkdir(parents=True, exist_ok=True)
    counts: dict[str, int] = {}
    skipped: list[str] = []
    lines = []
    for e in json.loads(args.entries.read_text(encoding="utf-8")):
        check_not_reserved({"repository": e["repository"]})
        where = f"{e['repository']}@{e['commit'][:7]}:{e['path']}"
        if e.get("skip"):
            skipped.append(f"{where}: {e['skip']}")
            continue
        data = blob(args.github_mirror, e["repository"], e["commit"], e["path"])
        if data is None:
            skipped.append(f"{where}: absent from the snapshot (>= 4 MiB or not in this commit)")
            continue
        g = e["generator"]
        base = {"generator": g, "label": "generated", "repo": e["repository"], "commit": e["commit"], "repo_path": e["path"],
                "licence": e["licence"], "file_sha256": hashlib.sha256(data).hexdigest()}
        stem = f"{g}/{e['repository'].replace('/', '+')}/{Path(e['path']).stem}"
        if not e.get("tiles"):
            rel = f"{stem}{Path(e['path']).suffix.lower()}"
            (args.out / rel).parent.mkdir(parents=True, exist_ok=True)
            (args.out / rel).write_bytes(data)
            lines.append({**base, "path": rel, "sha256": base["file_sha256"], "tile": None})
            counts[g] = counts.get(g, 0) + 1
            continue
        try:
            img = load_image(data, name=where).array
        except ImageLoadError as ex:
            skipped.append(f"{where}: {ex}")
            continue
        for k, t in tiles_of(img, e["tiles"]):
            rel = f"{stem}-tile{k:02d}.png"
            (args.out / rel).parent.mkdir(parents=True, exist_ok=True)
            ok, buf = cv2.imencode(".png", cv2.cvtColor(t, cv2.COLOR_RGB2BGR))
            (args.out / rel).write_bytes(buf.tobytes())
            lines.append({**base, "path": rel, "sha256": hashlib.sha256(buf.tobytes()).hexdigest(), "tile": {**e["tiles"], "index": k}})
            counts[g] = counts.get(g, 0) + 1
    (args.out / "index.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines), encoding="utf-8")
    for g, n in sorted(counts.items()):
        print(f"{g:24s} {n}")
    for s in skipped:
        print(f"skipped {s}")
    print(f"wrote {len(lines)} samples of {len(counts)} generators to {args.out} ({len(skipped)} entries skipped)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
