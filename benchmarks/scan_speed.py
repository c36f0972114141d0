"""Scan speed at 1024x1024 with every signal: the code before a change against after, in one run.

    python benchmarks/scan_speed.py --before-tree /tmp/genvis-before --reps 3 \
        --out benchmarks/results/scan-speed

The fixed folder (made here, under ``--folder``, if it is not there yet): the builtin
photographs (scikit-image, scikit-learn, matplotlib), centre-cropped to a square, resized to
1024x1024 and saved as JPEG 90, plus samples of three bundled photo generators (fixed seeds)
up-scaled to 1024x1024 (bicubic) and saved as JPEG 90. Each tree (``--before-tree`` and this
one) scans the folder in a fresh process with ``PYTHONPATH`` set to it: the default detector on
CPU, every signal (provenance, stability check, faces). The processes alternate, before then
after, ``--reps`` times, so load from other jobs on the machine falls on both alike; each one
first scans one image untimed (the network's first-call set-up), then times the whole folder.
Reported: images/s per tree (median over repetitions), the ratio after/before, and whether every
verdict is identical between the trees (and between repetitions).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SIDE = 1024
GENERATORS = (("gan-photos-128", 3), ("vae-photos", 2), ("flow-photos", 2))


def make_folder(folder: Path) -> list[Path]:
    """The fixed 1024x1024 JPEG folder (made once; files sorted by name)."""
    folder.mkdir(parents=True, exist_ok=True)
    if not any(folder.glob("*.jpg")):
        import numpy as np
        from PIL import Image

        from genvis_trust.datasets.builtin import _PHOTOS

        for key, _, resolve in _PHOTOS:
            if not os.path.exists(resolve()):
                continue
            im = Image.open(resolve()).convert("RGB")
            s = min(im.size)
            left, top = (im.width - s) // 2, (im.height - s) // 2
            im = im.crop((left, top, left + s, top + s)).resize((SIDE, SIDE), Image.LANCZOS)
            im.save(folder / f"photo-{key.replace('/', '-')}.jpg", quality=90)
        from genvis_trust.generators import load_generator

        for name, n in GENERATORS:
            g = load_generator(name, "cpu")
            imgs = g.sample(list(range(500, 500 + n))).numpy()
            for k, a in enumerate(imgs):
                a = np.asarray(a)
                if a.dtype != np.uint8:
                    a = np.clip(a * 255.0 if a.max() <= 1.0 else a, 0, 255).astype(np.uint8)
                Image.fromarray(a).resize((SIDE, SIDE), Image.BICUBIC).save(folder / f"gen-{name}-{k}.jpg", quality=90)
    return sorted(folder.glob("*.jpg"))


def child(folder: Path) -> None:
    """One timed pass over the folder with the tree on PYTHONPATH; JSON on stdout."""
    import genvis_trust
    from genvis_trust.scan import Scanner

    files = sorted(str(p) for p in folder.glob("*.jpg"))
    s = Scanner("default", device="cpu")
    list(s.scan(files[:1]))  # first-call set-up, untimed
    import resource

    r0 = resource.getrusage(resource.RUSAGE_SELF)
    t = time.perf_counter()
    recs = [r.to_dict() for r in s.scan(files)]
    wall = time.perf_counter() - t
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)  # every thread of this process
    s.close()
    rows = [{"input": os.path.basename(r["input"]), "verdict": r["verdict"],
             "p": (r["detector"] or {}).get("probability"),
             "stability": (r["detector"] or {}).get("stability"),
             "elapsed_s": r["image"].get("elapsed_s")} for r in recs]
    print(json.dumps({"package": genvis_trust.__file__, "wall_s": wall, "cpu_s": cpu, "n": len(files), "rows": rows}))


def profile(folder: Path) -> None:
    """One pass of this tree over the folder under cProfile (after the untimed first call):
    where the time goes, by the scan's stages (cumulative seconds)."""
    import cProfile
    import pstats

    from genvis_trust.scan import Scanner

    files = sorted(str(p) for p in folder.glob("*.jpg"))
    s = Scanner("default", device="cpu")
    list(s.scan(files[:1]))
    prof = cProfile.Profile()
    t = time.perf_counter()
    prof.enable()
    list(s.scan(files))
    prof.disable()
    wall = time.perf_counter() - t
    s.close()
    stages = {"score_paths": "the engine: decode, network on the images", "_stability": "the stability check",
              "_local": "faces and regions", "find_faces": "finding faces"}
    stats = pstats.Stats(prof).stats
    print(f"{len(files)} images in {wall:.1f} s (under cProfile)")
    for fn, what in stages.items():
        cum = sum(v[3] for k, v in stats.items() if k[2] == fn)
        print(f"  {fn:12s} {cum:6.1f} s  {what}")


def run_tree(tree: Path, folder: Path) -> dict:
    env = dict(os.environ, PYTHONPATH=str(tree))
    out = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child", str(folder)], env=env,
                         cwd="/", check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--before-tree", required=False, help="source tree of the code before (a git worktree)")
    ap.add_argument("--after-tree", default=str(HERE.parent), help="source tree of the code after (default: this one)")
    ap.add_argument("--folder", default="/tmp/genvis-scan-speed-1024")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--out", default=None, help="path stem: writes STEM.json and STEM.md")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--profile", action="store_true", help="profile one pass of this tree instead (stages, seconds)")
    args = ap.parse_args(argv)
    if args.child:
        child(Path(args.child))
        return 0
    if args.profile:
        make_folder(Path(args.folder))
        profile(Path(args.folder))
        return 0
    files = make_folder(Path(args.folder))
    trees = {"before": Path(args.before_tree).resolve(), "after": Path(args.after_tree).resolve()}
    runs: dict[str, list[dict]] = {k: [] for k in trees}
    for rep in range(args.reps):
        for name, tree in trees.items():
            r = run_tree(tree, Path(args.folder))
            runs[name].append(r)
            print(f"rep {rep} {name}: {r['n'] / r['wall_s']:.3f} images/s ({r['wall_s']:.1f} s wall, "
                  f"{r['cpu_s']:.1f} s CPU)", file=sys.stderr, flush=True)
    ips = {k: statistics.median(r["n"] / r["wall_s"] for r in v) for k, v in runs.items()}
    cpu = {k: statistics.median(r["cpu_s"] / r["n"] for r in v) for k, v in runs.items()}
    verdicts = {k: [[row["verdict"] for row in r["rows"]] for r in v] for k, v in runs.items()}
    same = all(x == verdicts["before"][0] for k in verdicts for x in verdicts[k])
    diffs = [(a["input"], a["verdict"], b["verdict"]) for a, b in zip(runs["before"][0]["rows"], runs["after"][0]["rows"],
                                                                     strict=True) if a["verdict"] != b["verdict"]]
    rep = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, CPU, affinity {sorted(os.sched_getaffinity(0))}",
        "command": "python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
        "trees": {k: str(v) for k, v in trees.items()},
        "images": len(files), "side": SIDE, "reps": args.reps,
        "images_per_s": {k: round(v, 4) for k, v in ips.items()},
        "images_per_s_runs": {k: [round(r["n"] / r["wall_s"], 4) for r in v] for k, v in runs.items()},
        "ratio_after_over_before": round(ips["after"] / ips["before"], 3),
        "cpu_s_per_image": {k: round(v, 4) for k, v in cpu.items()},
        "cpu_s_runs": {k: [round(r["cpu_s"], 2) for r in v] for k, v in runs.items()},
        "ratio_cpu_before_over_after": round(cpu["before"] / cpu["after"], 3),
        "verdicts_identical": same, "verdict_differences": diffs,
        "rows": {k: v[0]["rows"] for k, v in runs.items()},
    }
    print(json.dumps({k: rep[k] for k in ("images_per_s", "ratio_after_over_before", "cpu_s_per_image",
                                          "ratio_cpu_before_over_after", "verdicts_identical")}))
    if args.out:
        stem = Path(args.out)
        stem.parent.mkdir(parents=True, exist_ok=True)
        stem.with_suffix(".json").write_text(json.dumps(rep, indent=1) + "\n")
        lines = [f"# Scan speed, {SIDE}x{SIDE}, every signal", "",
                 f"{rep['date']}; {rep['machine']}; `{rep['command']}`", "",
                 f"{len(files)} images (builtin photographs and bundled generator samples up-scaled, JPEG 90), "
                 f"{args.reps} alternating repetitions per tree, each a fresh process.", "",
                 "| tree | images/s (median) | runs | CPU s per image (median; all threads) |", "|---|---|---|---|"]
        for k in trees:
            lines.append(f"| {k} | {ips[k]:.3f} | {', '.join(f'{x:.3f}' for x in rep['images_per_s_runs'][k])} | {cpu[k]:.3f} |")
        lines += ["", f"Ratio after/before (images/s): **{rep['ratio_after_over_before']}x**; CPU time per image "
                  f"before/after: **{rep['ratio_cpu_before_over_after']}x**. Verdicts identical: **{same}**.", "",
                  "| image | verdict before | verdict after | p | stability before | stability after |", "|---|---|---|---|---|---|"]
        for a, b in zip(runs["before"][0]["rows"], runs["after"][0]["rows"], strict=True):
            lines.append(f"| {a['input']} | {a['verdict']} | {b['verdict']} | {a['p']} | "
                         f"{'run' if a['stability'] and 'perturbed' in a['stability'] else 'not run'} | "
                         f"{json.dumps(b['stability']) if b['stability'] else 'not run'} |")
        stem.with_suffix(".md").write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
