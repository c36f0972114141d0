"""False positives of the metadata signal on camera originals.

    python scripts/collect_camera_originals.py --out /tmp/camera-originals
    python benchmarks/metadata_markers.py /tmp/camera-originals [--json out.json]

Runs the scan's metadata signal (``read_metadata`` plus the C2PA claim generator / software
agent markers) on every file of the collected set's ``manifest.jsonl`` and counts the files with
any marker: on camera originals every marker is a false positive. Prints each one with the
field and value that fired.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from genvis_trust.io import sniff_media_type
from genvis_trust.provenance.c2pa_manifest import read_c2pa
from genvis_trust.provenance.metadata import c2pa_service_markers, read_metadata


def measure(folder: Path) -> dict:
    recs = [json.loads(line) for line in (folder / "manifest.jsonl").read_text().splitlines() if line.strip()]
    fps, fields_read = [], 0
    t0 = time.perf_counter()
    for r in recs:
        data = (folder / r["file"]).read_bytes()
        sig = read_metadata(data)
        info = read_c2pa(data, sniff_media_type(data))
        markers = sig.markers + c2pa_service_markers(info.claim_generator, info.actions or [])
        fields_read += bool(sig.fields)
        if markers:
            fps.append({"file": r["file"], "make": r["make"], "model": r["model"],
                        "markers": [m.to_dict() for m in markers]})
    makes = sorted({r["make"].split()[0].lower() for r in recs if r["make"]})
    return {"files": len(recs), "files_with_metadata_fields": fields_read,
            "repositories": sorted({f"{r['repository']}@{r['commit'][:12]}" for r in recs}),
            "makes": len(makes), "make_names": makes,
            "false_positives": len(fps), "fp_rate": len(fps) / max(len(recs), 1),
            "seconds": round(time.perf_counter() - t0, 2), "flagged": fps}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folder", type=Path)
    ap.add_argument("--json", type=Path)
    a = ap.parse_args(argv)
    res = measure(a.folder)
    for f in res["flagged"]:
        print(f"FP {f['file']} ({f['make']} {f['model']}): "
              + "; ".join(f"{m['key']}={m['value']!r} -> {m['indicates']}" for m in f["markers"]))
    print(f"{res['files']} files ({res['files_with_metadata_fields']} with metadata fields read), "
          f"{res['makes']} makes: {res['false_positives']} false positives "
          f"(rate {res['fp_rate']:.4f}) in {res['seconds']} s")
    if a.json:
        a.json.write_text(json.dumps(res, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
