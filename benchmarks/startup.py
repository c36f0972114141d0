"""Start-up cost of the CLI: ``--help`` and a one-image ``scan`` in a fresh process, against
``python -c "import torch"`` measured in the same run.

    python benchmarks/startup.py --reps 5
    python benchmarks/startup.py --reps 5 --tree before=/tmp/genvis-before --tree after=.

Each ``--tree NAME=PATH`` is a source tree put first on ``PYTHONPATH`` (default: this
one), so the code before and after a change runs in one interleaved series: every
repetition runs each command of each tree once, in turn, so load from other processes
falls on all of them alike. "Cold" means a new Python process (imports, model load,
first-call costs); the files are in the OS page cache after the first repetition, which
is discarded. Python's bytecode is cached as an installed package has it: the children write
it under a temporary ``PYTHONPYCACHEPREFIX`` in that first round, even where
``PYTHONDONTWRITEBYTECODE`` is set (``--no-bytecode-cache`` compiles every module in every
run where that variable is set, as the runs recorded before this option were). Medians of
wall time and of the process's CPU time (user + system; on a machine shared with other jobs
the wall time also counts the waiting) are reported. Targets (issue 10): ``--help`` under a
second; a cold one-image ``scan`` <= ``import torch`` + 1.5 s.

``--without-trace-check`` adds, per tree, the scan run with ``torch.jit.trace(...,
check_trace=False)``: the cost of the detector's start-up graph without the tracer's own
output check, which imports ``torch.distributed.tensor`` (~1 s) and runs the network again,
though ``Detector.optimize_for_inference`` compares the outputs itself.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

_NO_TRACE_CHECK = """import functools, runpy, sys
import torch.jit
torch.jit.trace = functools.partial(torch.jit.trace, check_trace=False)
sys.argv = ["genvis-trust"] + sys.argv[1:]
runpy.run_module("genvis_trust.cli.main", run_name="__main__")
"""


def _image(tmp: Path) -> Path:
    from PIL import Image
    from skimage import data

    p = tmp / "astronaut.jpg"
    Image.fromarray(data.astronaut()).save(p, quality=90)  # 512x512, no provenance
    return p


def _run(cmd: list[str], pythonpath: str | None, pycache: Path | None, cwd: Path) -> tuple[float, float]:
    """(wall seconds, CPU seconds: user + system of the child). ``cwd``: a folder with no
    ``genvis_trust`` in it, since ``python -m`` puts the working directory before PYTHONPATH."""
    env = dict(os.environ)
    if pycache is not None:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(pycache)
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    subprocess.run(cmd, env=env, cwd=cwd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - t
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--tree", action="append", default=None, help="NAME=PATH of a source tree (repeatable)")
    ap.add_argument("--out", default=None, help="JSON file to write")
    ap.add_argument("--without-trace-check", action="store_true",
                    help="also time each scan with torch.jit.trace(check_trace=False)")
    ap.add_argument("--no-bytecode-cache", action="store_true",
                    help="compile every module in every run (PYTHONDONTWRITEBYTECODE as set), no bytecode cache")
    args = ap.parse_args(argv)
    trees = dict(t.split("=", 1) for t in (args.tree or [f"this={HERE.parent}"]))
    trees = {k: str(Path(v).resolve()) for k, v in trees.items()}

    sys.path.insert(0, str(HERE))
    from watermark_transform import _machine

    tmp = Path(tempfile.mkdtemp())
    img = _image(tmp)
    pycache = None if args.no_bytecode_cache else tmp / "pycache"
    py = sys.executable
    cmds = {"import torch": ([py, "-c", "import torch"], None)}
    for name, path in trees.items():
        cmds[f"{name}: --help"] = ([py, "-m", "genvis_trust.cli.main", "--help"], path)
        cmds[f"{name}: scan 1 image"] = ([py, "-m", "genvis_trust.cli.main", "scan", str(img), "--json"], path)
        if args.without_trace_check:
            runner = tmp / "no_trace_check.py"
            runner.write_text(_NO_TRACE_CHECK)
            cmds[f"{name}: scan 1 image, check_trace=False"] = ([py, str(runner), "scan", str(img), "--json"], path)
    for name, path in trees.items():  # each tree's commands run that tree's code
        where = subprocess.run([py, "-c", "import genvis_trust; print(genvis_trust.__file__)"], cwd=tmp, check=True,
                               env={**os.environ, "PYTHONPATH": path}, capture_output=True, text=True).stdout.strip()
        if not Path(where).resolve().is_relative_to(path):
            raise SystemExit(f"tree {name}: genvis_trust is imported from {where}, not from {path}")
    times: dict[str, list[float]] = {k: [] for k in cmds}
    cpu: dict[str, list[float]] = {k: [] for k in cmds}
    for rep in range(args.reps + 1):
        for k, (cmd, pp) in cmds.items():
            t, c = _run(cmd, pp, pycache, tmp)
            if rep:  # the first round warms the page cache
                times[k].append(t)
                cpu[k].append(c)
    med = {k: statistics.median(v) for k, v in times.items()}
    med_cpu = {k: statistics.median(v) for k, v in cpu.items()}
    torch_s = med["import torch"]
    torch_cpu = med_cpu["import torch"]
    out = {
        "machine": _machine(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": "python benchmarks/startup.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "trees": trees,
        "reps": args.reps,
        "bytecode_cache": pycache is not None,
        "median_s": med,
        "all_s": times,
        "scan_minus_import_torch_s": {k: v - torch_s for k, v in med.items() if "scan" in k},
        # CPU time (user + system) of each process: what a shared, busy machine distorts least
        "median_cpu_s": med_cpu,
        "all_cpu_s": cpu,
        "scan_minus_import_torch_cpu_s": {k: v - torch_cpu for k, v in med_cpu.items() if "scan" in k},
    }
    print(f"# Start-up\n\n{out['date']} · {out['machine']} · `{out['command']}`\n")
    print(f"Median of {args.reps} interleaved runs, each a new process.\n")
    print("| command | median wall | minus `import torch` | median CPU (user+sys) | minus `import torch` |")
    print("|---|---|---|---|---|")
    for k, v in med.items():
        extra = f"{v - torch_s:+.2f} s" if "scan" in k else ""
        extra_cpu = f"{med_cpu[k] - torch_cpu:+.2f} s" if "scan" in k else ""
        print(f"| {k} | {v:.2f} s | {extra} | {med_cpu[k]:.2f} s | {extra_cpu} |")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
