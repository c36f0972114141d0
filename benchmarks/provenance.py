"""Provenance benchmark: stamp/verify cost vs the libraries called directly, watermark
throughput single vs batched, and the robustness table.

    python benchmarks/provenance.py            # default run, ~4 minutes on 2 CPU cores
    python benchmarks/provenance.py --quick    # smoke run

Prints Markdown to stdout; writes JSON and charts to --out (default benchmarks/out/).
"""

from __future__ import annotations

import argparse
import datetime
import io
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _timeit(fn, reps):
    fn()  # warm-up
    t = time.perf_counter()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - t) / reps


def bench_stamp_verify(images, reps):
    import c2pa
    from imwatermark import WatermarkDecoder, WatermarkEncoder

    from genvis_trust.io import decode_image
    from genvis_trust.provenance.c2pa_manifest import build_manifest, read_c2pa
    from genvis_trust.provenance.keys import init_keys, load_signing_material
    from genvis_trust.provenance.payload import get_codec
    from genvis_trust.provenance.stamp import encode_for_stamp, stamp_array
    from genvis_trust.provenance.store import ProvenanceStore
    from genvis_trust.provenance.verify import verify_bytes

    d = Path(tempfile.mkdtemp())
    init_keys(d / "keys")
    m = load_signing_material(d / "keys")
    store = ProvenanceStore(d / "p.db")
    bits = get_codec(64).encode(1)
    img = images[0]
    manifest = build_manifest(title="x", generator="g", watermark_backend="dwtDctSvd",
                              payload_bits="".join(map(str, bits)), record_id=1)

    def ours_stamp():
        stamp_array(img, d / "o.png", store=store, material=m, fmt="PNG", generator="g")

    def direct_stamp():  # what a user would write with the two libraries alone
        enc = WatermarkEncoder()
        enc.set_watermark("bits", bits.tolist())
        out = enc.encode(np.ascontiguousarray(img[..., ::-1]), "dwtDctSvd")
        data = encode_for_stamp(np.ascontiguousarray(out[..., ::-1]), "PNG")
        signer = c2pa.Signer.from_info(c2pa.C2paSignerInfo(b"es256", m.chain_pem, m.key_pem, None))
        dst = io.BytesIO()
        c2pa.Builder(manifest).sign(signer, "image/png", io.BytesIO(data), dst)
        return dst.getvalue()

    t_ours_stamp = _timeit(ours_stamp, reps)
    t_direct_stamp = _timeit(direct_stamp, reps)
    signed = (d / "o.png").read_bytes()

    def ours_verify():
        verify_bytes(signed, store=store)

    def direct_verify():
        r = c2pa.Reader("image/png", io.BytesIO(signed))
        r.get_validation_state()
        r.json()
        rgb = decode_image(signed).array
        WatermarkDecoder("bits", 64).decode(np.ascontiguousarray(rgb[..., ::-1]), "dwtDctSvd")

    def ours_verify_same_work():  # C2PA + dwtDctSvd only: the same signals as direct_verify
        verify_bytes(signed, backends=("dwtDctSvd",), known_generators=False)

    _ = read_c2pa
    return {
        "image": f"{img.shape[1]}x{img.shape[0]} PNG",
        "stamp_ours_s": t_ours_stamp,
        "stamp_direct_s": t_direct_stamp,
        "stamp_overhead": t_ours_stamp / t_direct_stamp,
        "verify_ours_full_s": _timeit(ours_verify, reps),
        "verify_ours_same_work_s": _timeit(ours_verify_same_work, reps),
        "verify_direct_s": _timeit(direct_verify, reps),
    }


def bench_throughput(images, reps):
    from genvis_trust.provenance.payload import get_codec
    from genvis_trust.provenance.watermarks import get_watermark

    rows = []
    for name in ("dwtDctSvd", "dwtDct"):
        be = get_watermark(name)
        codec = get_codec(be.n_bits)
        t = time.perf_counter()
        marked = [be.embed(im, codec.encode(i)) for i, im in enumerate(images)]
        t_embed = (time.perf_counter() - t) / len(images)
        ref = [be.read_bits_reference(im) for im in marked]  # also warms up
        t_lib = _timeit(lambda be=be, marked=marked: [be.read_bits_reference(im) for im in marked], reps) / len(images)
        t_single = _timeit(lambda be=be, marked=marked: [be.read_bits(im) for im in marked], reps) / len(images)
        t_batch = _timeit(lambda be=be, marked=marked: be.read_bits_batch(marked), reps) / len(images)
        same = all(np.array_equal(r, o.bits) for r, o in zip(ref, be.read_bits_batch(marked), strict=True))
        rows.append({"backend": name, "n_images": len(images), "embed_s": t_embed,
                     "decode_library_loop_s": t_lib, "decode_ours_single_s": t_single,
                     "decode_ours_batched_s": t_batch, "batched_vs_library_loop": t_lib / t_batch,
                     "batched_vs_ours_single": t_single / t_batch, "bits_identical": same})
    return rows


def bench_rivagan(img):
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return {"error": "onnxruntime not installed"}
    from genvis_trust.provenance.payload import get_codec
    from genvis_trust.provenance.watermarks import get_watermark

    be = get_watermark("rivaGan")
    marked = be.embed(img, get_codec(32).encode(5))
    be.read_bits(marked)
    t = time.perf_counter()
    be.read_bits(marked)
    t_read = time.perf_counter() - t
    t = time.perf_counter()
    be.read_bits_batch([marked, marked, marked, marked], batch_size=4)
    t_batch = (time.perf_counter() - t) / 4
    return {"image": f"{img.shape[1]}x{img.shape[0]}", "decode_s": t_read, "decode_batched_s": t_batch}


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", default="benchmarks/out")
    args = ap.parse_args(argv)

    from genvis_trust.datasets import get_source
    from genvis_trust.provenance.robustness import evaluate_backend, markdown_table, write_outputs

    n = 4 if args.quick else 8
    reps = 1 if args.quick else 3
    imgs512 = [s.image for s in get_source("builtin-photos", patch=512, n=n, seed=0, split="train")]
    out = {"machine": f"{platform.machine()} {platform.processor() or ''} {os.cpu_count()} CPUs visible, "
                      f"Python {platform.python_version()}",
           "date": datetime.datetime.now().isoformat(timespec="seconds"),
           "command": "python benchmarks/provenance.py" + (" --quick" if args.quick else "")}
    print(f"# Provenance benchmark\n\n{out['date']} · {out['machine']} · `{out['command']}`\n")

    sv = bench_stamp_verify(imgs512, reps)
    out["stamp_verify"] = sv
    print("## Stamp and verify, one 512x512 image\n")
    print("| step | ours | libraries directly | ratio |\n|---|---|---|---|")
    print(f"| stamp (dwtDctSvd + C2PA sign + store) | {sv['stamp_ours_s']*1e3:.0f} ms | {sv['stamp_direct_s']*1e3:.0f} ms | {sv['stamp_overhead']:.2f}x |")
    print(f"| verify, same signals (C2PA + dwtDctSvd) | {sv['verify_ours_same_work_s']*1e3:.0f} ms | {sv['verify_direct_s']*1e3:.0f} ms | {sv['verify_ours_same_work_s']/sv['verify_direct_s']:.2f}x |")
    print(f"| verify, full default report (+ dwtDct, SDXL/SD marks, metadata, store) | {sv['verify_ours_full_s']*1e3:.0f} ms | – | – |\n")

    tp = bench_throughput(imgs512, reps)
    out["throughput"] = tp
    print(f"## Watermark decode throughput, {n} images 512x512 (per image)\n")
    print("| backend | embed (library) | decode: library loop | ours, one at a time | ours, batched | batched vs library loop | batched vs ours single | bits identical |")
    print("|---|---|---|---|---|---|---|---|")
    for r in tp:
        print(f"| {r['backend']} | {r['embed_s']*1e3:.0f} ms | {r['decode_library_loop_s']*1e3:.1f} ms | {r['decode_ours_single_s']*1e3:.1f} ms | "
              f"{r['decode_ours_batched_s']*1e3:.1f} ms | {r['batched_vs_library_loop']:.1f}x | {r['batched_vs_ours_single']:.2f}x | {r['bits_identical']} |")
    rg = bench_rivagan(imgs512[0])
    out["rivagan"] = rg
    if "error" not in rg:
        print(f"\nrivaGan decode on CPU, {rg['image']}: {rg['decode_s']:.2f} s single, {rg['decode_batched_s']:.2f} s/image batched (4)\n")

    print("## Robustness\n")
    out["robustness"] = []
    plan = [("dwtDctSvd", imgs512[: (4 if args.quick else 8)]), ("dwtDct", imgs512[: (4 if args.quick else 8)])]
    if "error" not in rg:
        small = [s.image for s in get_source("builtin-photos", patch=256, n=3, seed=0, split="train")]
        plan.append(("rivaGan", small[: (2 if args.quick else 3)]))
    for name, ims in plan:
        res = evaluate_backend(name, ims, seed=0)
        out["robustness"].append(res)
        write_outputs(res, args.out)
        print(markdown_table(res))
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "provenance_benchmark.json").write_text(json.dumps(out, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
