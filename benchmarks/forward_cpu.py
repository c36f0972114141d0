"""Where the default detector's CPU forward pass spends its time, and what would pay.

Run:  python benchmarks/forward_cpu.py [--tiles 256] [--repeats 5] [--detector default]

On one fixed stack of real tiles (crops of the built-in photos at the detector's patch size,
exactly what the engine feeds it) it times, in one process and interleaved round by round
(so a busy machine slows every variant alike), the forward pass of:

- ``current``: the engine's CPU path (``Detector.forward_uint8`` with the frozen
  channels-last TorchScript graph, at the engine's CPU batch, torch's default thread
  count): the reference;
- ``eager``: the plain module (contiguous NCHW), and ``eager_cl``: channels-last;
- ``current`` at other batch sizes and thread counts;
- ``compile``: ``torch.compile`` (inductor) where a C compiler is present, timed after its
  warm-up (the compile time is reported apart);
- ``onnxruntime``: ``Detector.optimize_for_inference("onnxruntime")``, the network exported
  to ONNX (``torch.onnx.export``, which needs the ``onnx`` package) and run by ONNX
  Runtime's CPU provider with torch's thread count, at the engine's batch (and at 128),
  when the export works in this environment (the reason is recorded when it does not);
  the export-and-check and first-batch times are reported apart.

Each variant's logits are compared with ``current`` (max |difference|, and whether every
calibrated probability stays within 1e-6), its throughput is a ratio to ``current`` from
the same round, and the network's FLOPs per tile against a measured fp32 matmul rate give
the share of the CPU's peak it reaches. Results go to benchmarks/results/forward_cpu.json
and .md with machine, date and command.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def real_tiles(det, n: int, seed: int = 0) -> np.ndarray:
    """``n`` tiles of the detector's patch size cut from built-in photos, as the engine makes them."""
    from genvis_trust.datasets import get_source

    out = []
    for s in get_source("builtin-photos", patch=512, n=max(1, n // 8), seed=seed, scales=(1.0, 0.5)):
        out.append(det.tiles(s.image)[0])
        if sum(len(t) for t in out) >= n:
            break
    return np.concatenate(out)[:n]


def matmul_gflops(threads: int, size: int = 1024, repeats: int = 5) -> float:
    import torch

    torch.set_num_threads(threads)
    a, b = torch.rand(size, size), torch.rand(size, size)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    return 2 * size**3 / best / 1e9


def flops_per_tile(net, patch: int) -> float:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as fc, torch.no_grad():
        net(torch.rand(1, 3, patch, patch))
    return float(fc.get_total_flops())


def run_batches(fn, x_uint8, batch: int) -> np.ndarray:
    return np.concatenate([fn(x_uint8[i : i + batch]) for i in range(0, len(x_uint8), batch)])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tiles", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=5, help="interleaved rounds; the median per variant is kept")
    ap.add_argument("--detector", default="default")
    ap.add_argument("--no-compile", action="store_true", help="skip torch.compile (slow to warm up)")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "forward_cpu.json")
    args = ap.parse_args()

    import torch

    from genvis_trust.detectors import load_detector
    from genvis_trust.scoring.engine import ScoringEngine

    default_threads = torch.get_num_threads()
    det = load_detector(args.detector, device="cpu")
    eager_net = det.net.eval()
    engine = ScoringEngine(det)  # builds the frozen graph; its batch is the engine's CPU batch
    assert engine.optimized, "the frozen graph is the engine's CPU path; it must build here"
    torch.set_num_threads(default_threads)  # the engine may have set it; the variants set their own
    eb = engine.batch_size
    x = torch.from_numpy(real_tiles(det, args.tiles))
    n = len(x)

    def to_float(b, cl=False):
        f = b.permute(0, 3, 1, 2).float().div_(255.0)
        return f.contiguous(memory_format=torch.channels_last) if cl else f

    def current(b):
        return det.forward_uint8(b)

    def eager(b):
        with torch.inference_mode():
            return eager_net(to_float(b)).float().numpy()

    eager_cl_net = None

    def eager_cl(b):
        with torch.inference_mode():
            return eager_cl_net(to_float(b, cl=True)).float().numpy()

    import copy

    eager_cl_net = copy.deepcopy(eager_net).to(memory_format=torch.channels_last)

    variants: dict[str, tuple] = {"current": (current, eb, default_threads)}
    for b in sorted({8, 16, 32, 128} - {eb}):
        variants[f"current_batch{b}"] = (current, b, default_threads)
    for t in sorted({1, 2, os.cpu_count() or 1} - {default_threads}):
        variants[f"current_threads{t}"] = (current, eb, t)
    variants["eager"] = (eager, eb, default_threads)
    variants["eager_cl"] = (eager_cl, eb, default_threads)
    notes: dict[str, str] = {}

    compile_s = None
    if args.no_compile:
        notes["compile"] = "skipped (--no-compile)"
    elif not (shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")):
        notes["compile"] = "no C compiler on PATH: torch.compile's CPU backend needs one"
    else:
        try:
            compiled = torch.compile(copy.deepcopy(eager_net), dynamic=False)

            def comp(b):
                with torch.inference_mode():
                    return compiled(to_float(b)).float().numpy()

            t0 = time.perf_counter()
            run_batches(comp, x, eb)  # warm-up compiles every batch shape used below
            compile_s = time.perf_counter() - t0
            variants["compile"] = (comp, eb, default_threads)
        except Exception as e:  # recorded, not hidden
            notes["compile"] = f"failed: {type(e).__name__}: {str(e)[:300]}"

    onnx_s: dict[str, float] = {}
    try:
        # the detector's own opt-in ONNX Runtime graph (export + check against the eager network)
        ort_det = load_detector(args.detector, device="cpu")
        t0 = time.perf_counter()
        assert ort_det.optimize_for_inference("onnxruntime"), "the ONNX Runtime graph was rejected"
        onnx_s["export_and_check_s"] = time.perf_counter() - t0

        def onnx_run(b):
            return ort_det.forward_uint8(b)

        t0 = time.perf_counter()
        onnx_run(x[:eb])
        onnx_s["first_batch_s"] = time.perf_counter() - t0
        variants["onnxruntime"] = (onnx_run, eb, default_threads)
        variants["onnxruntime_batch128"] = (onnx_run, 128, default_threads)
    except Exception as e:
        notes["onnxruntime"] = f"export or session failed: {type(e).__name__}: {str(e)[:300]}"

    torch.set_num_threads(default_threads)
    ref = run_batches(current, x, eb)
    agree = {}
    for name, (fn, batch, threads) in variants.items():
        torch.set_num_threads(threads)
        z = run_batches(fn, x, batch)  # also the warm-up
        p_ref, p = det.probabilities(ref), det.probabilities(z)
        agree[name] = {"max_abs_logit_diff": float(np.max(np.abs(z - ref))),
                       "max_abs_prob_diff": float(np.max(np.abs(p - p_ref))),
                       "records_identical_1e-6": bool(np.max(np.abs(p - p_ref)) <= 1e-6)}

    times: dict[str, list[float]] = {k: [] for k in variants}
    ratios: dict[str, list[float]] = {k: [] for k in variants}
    for _ in range(args.repeats):
        round_t = {}
        for name, (fn, batch, threads) in variants.items():
            torch.set_num_threads(threads)
            t = time.perf_counter()
            run_batches(fn, x, batch)
            round_t[name] = time.perf_counter() - t
        for name, t in round_t.items():
            times[name].append(t)
            ratios[name].append(round_t["current"] / t)  # > 1: faster than current
    torch.set_num_threads(default_threads)

    flops = flops_per_tile(eager_net, det.patch)
    peak = matmul_gflops(default_threads)
    rows = {}
    for name, (_fn, batch, threads) in variants.items():
        med = statistics.median(times[name])
        rows[name] = {"batch": batch, "threads": threads, "tiles_per_s": round(n / med, 1),
                      "ms_per_tile": round(1000 * med / n, 3),
                      "speed_vs_current": round(statistics.median(ratios[name]), 3),
                      "speed_range": [round(min(ratios[name]), 3), round(max(ratios[name]), 3)],
                      "share_of_matmul_peak": round(flops * n / med / 1e9 / peak, 4), **agree[name]}

    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    result = {
        "command": "python " + " ".join([os.path.relpath(sys.argv[0])] + sys.argv[1:]),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": {"cpu": cpu, "cores": os.cpu_count(), "load_average": [round(v, 2) for v in os.getloadavg()],
                    "torch": torch.__version__, "python": platform.python_version()},
        "detector": {"name": det.name, "family": det.family, "patch": det.patch, "sha256": det.sha256},
        "tiles": n, "repeats": args.repeats, "torch_default_threads": default_threads,
        "gflop_per_tile": round(flops / 1e9, 4), "matmul_gflops": round(peak, 1),
        "compile_warmup_s": None if compile_s is None else round(compile_s, 1),
        "onnx_startup_s": {k: round(v, 3) for k, v in onnx_s.items()},
        "variants": rows, "notes": notes,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    lines = [
        f"# CPU forward pass of the `{det.name}` detector ({det.family}, {det.patch} px tiles)",
        "",
        f"{result['date']}; {cpu}, {os.cpu_count()} cores (load average {result['machine']['load_average']}), "
        f"torch {torch.__version__}.",
        f"Command: `{result['command']}`. {n} real tiles, {args.repeats} interleaved rounds, medians; "
        f"speed is the per-round ratio to `current` (the engine's path), > 1 is faster.",
        f"The network costs {flops / 1e9:.3f} GFLOP per tile; fp32 matmul here reaches {peak:.0f} GFLOP/s.",
        "",
        "| variant | batch | threads | tiles/s | speed vs current | range over rounds | share of matmul peak | max abs logit diff | records identical (1e-6) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in rows.items():
        lines.append(f"| {name} | {r['batch']} | {r['threads']} | {r['tiles_per_s']} | {r['speed_vs_current']:.2f}x | "
                     f"{r['speed_range'][0]:.2f}-{r['speed_range'][1]:.2f}x | "
                     f"{100 * r['share_of_matmul_peak']:.1f}% | {r['max_abs_logit_diff']:.2e} | {r['records_identical_1e-6']} |")
    if compile_s is not None:
        lines += ["", f"torch.compile warm-up (compiling): {compile_s:.1f} s, paid once per process."]
    if onnx_s:
        lines += ["", "ONNX Runtime start-up, paid once per process: " + ", ".join(f"{k} {v:.2f} s" for k, v in onnx_s.items()) + "."]
    for k, v in notes.items():
        lines += ["", f"{k}: {v}"]
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
