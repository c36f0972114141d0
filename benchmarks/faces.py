"""Faces on real photographs: how many the cascade finds, how many are large enough to score,
and how often a face "stands out" (the rule that can make scan say likely_generated).

    python benchmarks/faces.py --photos-split val --photos-split test --builtin --out benchmarks/results/faces.json
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

from genvis_trust.datasets import get_source
from genvis_trust.detectors import load_detector
from genvis_trust.faces import find_faces, score_faces


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--photos-split", action="append", default=[])
    ap.add_argument("--builtin", action="store_true")
    ap.add_argument("--detector", default="default")
    ap.add_argument("--out", required=True)
    a = ap.parse_args(argv)
    det = load_detector(a.detector, device="cpu")
    sets = [(f"photos-native/{sp}", get_source("photos-native", split=sp)) for sp in a.photos_split]
    if a.builtin:
        sets.append(("builtin-photos", get_source("builtin-photos")))
    res = {"command": "python " + " ".join(shlex.quote(x) for x in sys.argv), "date": time.strftime("%Y-%m-%d"), "sets": {}}
    for name, src in sets:
        rows, t_find = [], 0.0
        for s in src.samples():
            t0 = time.process_time()
            boxes = find_faces(s.image)
            t_find += time.process_time() - t0
            faces = score_faces(det, s.image, det.score(s.image), boxes=boxes) if boxes else []
            rows.append({"key": s.key, "size": list(s.image.shape[:2]), "faces": [f.to_dict() for f in faces]})
        fs = [f for r in rows for f in r["faces"]]
        res["sets"][name] = {
            "images": len(rows), "images_with_faces": sum(bool(r["faces"]) for r in rows), "faces": len(fs),
            "scored": sum(f["status"] == "scored" for f in fs), "too_small": sum(f["status"] == "too_small" for f in fs),
            "face_p_ge_0.5": sum((f["probability"] or 0) >= 0.5 for f in fs), "fires": sum(f["fires"] for f in fs),
            "images_firing": sum(any(f["fires"] for f in r["faces"]) for r in rows),
            "find_cpu_s_per_image": round(t_find / max(1, len(rows)), 3), "per_image": rows,
        }
        print(name, {k: v for k, v in res["sets"][name].items() if k != "per_image"}, file=sys.stderr)
        Path(a.out).write_text(json.dumps(res, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
