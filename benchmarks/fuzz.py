"""Fuzzing every format the scan reads: mutants of real files through the whole scan.

    python benchmarks/fuzz.py --n 10000 --timeout 30 --json benchmarks/results/fuzz.json

Seeds are made here with the real libraries: MP4 and MOV (PyAV, H.264), HEIC (pillow-heif),
AVIF (Pillow), PDF (Pillow), MP3, WAV and M4A (PyAV), JPEG/PNG/WebP, and a C2PA-signed copy of
each kind c2pa-python signs (a throwaway test CA). Each mutant (truncation, overwritten or
inserted or deleted bytes, duplicated or swapped spans, extreme 32-bit lengths) goes through
``Scanner.scan`` (C2PA, metadata, decoding, watermarks, the video path, a detector) in a worker
process; the parent gives each file a time limit (a worker that overruns it is killed and
replaced: a hang), so every mutant gets exactly one record: the verdict or error code the
scan gave, or ``exception`` (a traceback escaped the scan) or ``timeout``. RSS is measured in
the worker at the start (after the first 50 files) and at the end.

The detector is the bundled 32 px ``npr32-toy`` with the stability check and face search off:
they work on decoded pixels, which no container mutation reaches in a new way, and they would
multiply the time per file; every reader of bytes runs.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import random
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np

TOY_DETECTOR = "npr32-toy"


# --------------------------------------------------------------------------- seeds


def _frames(n: int = 6, h: int = 64, w: int = 64) -> list[np.ndarray]:
    rng = np.random.default_rng(3)
    base = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    return [np.roll(base, 4 * i, axis=1) for i in range(n)]


def _video(fmt: str) -> bytes:
    from fractions import Fraction

    import av

    buf = io.BytesIO()
    with av.open(buf, "w", format=fmt) as c:
        s = c.add_stream("libx264", rate=Fraction(12))
        s.width, s.height, s.pix_fmt = 64, 64, "yuv420p"
        s.options = {"preset": "ultrafast"}
        for a in _frames():
            for p in s.encode(av.VideoFrame.from_ndarray(a, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return buf.getvalue()


def _audio(fmt: str, codec: str) -> bytes:
    import av

    rate = 22050 if codec != "aac" else 44100
    buf = io.BytesIO()
    with av.open(buf, "w", format=fmt) as c:
        s = c.add_stream(codec, rate=rate)
        s.layout = "mono"
        t = np.arange(rate // 4) / rate
        pcm = (np.sin(2 * np.pi * 440 * t) * 12000).astype(np.int16)[None, :]
        fmt_name = "s16" if codec == "pcm_s16le" else ("fltp" if codec == "aac" else "s16p")
        frame_len = 1152 if codec == "libmp3lame" else 1024
        for k in range(0, pcm.shape[1], frame_len):
            chunk = pcm[:, k : k + frame_len]
            if fmt_name == "fltp":
                chunk = (chunk.astype(np.float32) / 32768.0)
            fr = av.AudioFrame.from_ndarray(np.ascontiguousarray(chunk), format=fmt_name, layout="mono")
            fr.sample_rate = rate
            for p in s.encode(fr):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return buf.getvalue()


def _image(fmt: str) -> bytes:
    from PIL import Image

    im = Image.fromarray(_frames(1, 48, 64)[0])
    buf = io.BytesIO()
    if fmt == "HEIF":
        import pillow_heif

        pillow_heif.register_heif_opener()
    im.save(buf, fmt, **({"quality": 80} if fmt in ("JPEG", "WEBP", "AVIF", "HEIF") else {}))
    return buf.getvalue()


def make_seeds(keys_dir: str | os.PathLike | None = None) -> dict[str, bytes]:
    """Seed files by name (``kind.ext``; ``c2pa-`` names carry a signed manifest)."""
    seeds = {
        "video.mp4": _video("mp4"),
        "video.mov": _video("mov"),
        "image.heic": _image("HEIF"),
        "image.avif": _image("AVIF"),
        "document.pdf": _image("PDF"),
        "audio.mp3": _audio("mp3", "libmp3lame"),
        "audio.wav": _audio("wav", "pcm_s16le"),
        "audio.m4a": _audio("ipod", "aac"),
        "image.jpg": _image("JPEG"),
        "image.png": _image("PNG"),
        "image.webp": _image("WEBP"),
    }
    from genvis_trust.io import sniff_media_type
    from genvis_trust.provenance.c2pa_manifest import build_manifest, sign_image_bytes
    from genvis_trust.provenance.keys import init_keys, load_signing_material

    with tempfile.TemporaryDirectory(prefix="gvt-fuzz-keys-") as tmp:
        d = Path(keys_dir or tmp)
        if not (d / "signer.chain.pem").is_file():
            init_keys(d)
        material = load_signing_material(d)
        for name, data in list(seeds.items()):
            mime = sniff_media_type(data)
            manifest = build_manifest(title=name, generator="fuzz-seed")
            try:
                signed, _ = sign_image_bytes(data, mime, manifest, material)
            except Exception as e:  # a kind c2pa-python cannot sign is fuzzed unsigned only
                print(f"no signed seed for {name} ({mime}): {str(e)[:120]}", file=sys.stderr)
                continue
            seeds[f"c2pa-{name}"] = signed
    return seeds


# --------------------------------------------------------------------------- mutations

_INTERESTING = [0, 1, 0x7F, 0x80, 0xFF, 0x7FFF, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF, 0x10000, 8]


def mutate(rng: random.Random, data: bytes) -> tuple[bytes, str]:
    """One random mutation of ``data`` and its name."""
    d = bytearray(data)
    n = len(d)
    kind = rng.randrange(9)
    if kind == 0:
        at = rng.randrange(1, n)
        return bytes(d[:at]), f"truncate@{at}"
    if kind in (1, 2):  # overwrite a few bytes: in the first 512 (headers, boxes) or anywhere
        top = min(n, 512) if kind == 1 else n
        at = rng.randrange(top)
        k = rng.randint(1, 8)
        d[at : at + k] = bytes(rng.randrange(256) for _ in range(k))
        return bytes(d[:n]), f"overwrite@{at}+{k}"
    if kind == 3:
        at = rng.randrange(n)
        k = rng.randint(1, 64)
        d[at:at] = bytes(rng.randrange(256) for _ in range(k))
        return bytes(d), f"insert@{at}+{k}"
    if kind == 4:
        at = rng.randrange(n)
        k = rng.randint(1, 256)
        del d[at : at + k]
        return bytes(d), f"delete@{at}+{k}"
    if kind == 5:  # an extreme 32-bit value (box/chunk/segment lengths), either byte order
        at = rng.randrange(max(1, n - 4))
        v = rng.choice(_INTERESTING)
        d[at : at + 4] = v.to_bytes(4, rng.choice(("big", "little")))
        return bytes(d), f"int32@{at}={v:#x}"
    if kind == 6:  # duplicate a span (repeated boxes, chunks)
        a = rng.randrange(n)
        k = rng.randint(1, min(4096, n - a))
        at = rng.randrange(n)
        d[at:at] = d[a : a + k]
        return bytes(d), f"duplicate@{a}+{k}->{at}"
    if kind == 7:  # bit flips spread over the file
        for _ in range(rng.randint(1, 16)):
            at = rng.randrange(n)
            d[at] ^= 1 << rng.randrange(8)
        return bytes(d), "bitflips"
    # swap two spans
    a, b = sorted(rng.sample(range(n), 2))
    k = rng.randint(1, max(1, min(512, b - a)))
    d[a : a + k], d[b : b + k] = d[b : b + k], d[a : a + k]
    return bytes(d), f"swap@{a},{b}+{k}"


def mutants(seeds: dict[str, bytes], n: int, seed: int = 0):
    """``n`` mutants, cycling over the seeds: (index, seed name, mutation, bytes)."""
    rng = random.Random(seed)
    names = sorted(seeds)
    for i in range(n):
        name = names[i % len(names)]
        data, how = mutate(rng, seeds[name])
        if rng.random() < 0.2:  # a second mutation now and then
            data, how2 = mutate(rng, data) if len(data) > 1 else (data, "")
            how = f"{how};{how2}"
        yield i, name, how, data


# --------------------------------------------------------------------------- target


def make_scanner():
    from genvis_trust.scan import Scanner

    return Scanner(TOY_DETECTOR, device="cpu", check_stability=False, faces=False, workers=1)


def scan_one(scanner, data: bytes, name: str) -> dict:
    """One record: the scan's verdict and error code, or the exception that escaped it."""
    t0 = time.perf_counter()
    try:
        res = list(scanner.scan([data], names=[name]))
        if len(res) != 1:
            return {"outcome": "exception", "detail": f"{len(res)} results for one input",
                    "seconds": time.perf_counter() - t0}
        r = res[0].to_dict()
        code = (r.get("error") or {}).get("code")
        return {"outcome": f"error:{code}" if code else r["verdict"], "seconds": time.perf_counter() - t0}
    except BaseException as e:  # noqa: BLE001 - counting what escapes is the point
        if isinstance(e, KeyboardInterrupt):
            raise
        return {"outcome": "exception", "detail": "".join(traceback.format_exception(e))[-2000:],
                "seconds": time.perf_counter() - t0}


def rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _worker(conn) -> None:
    import warnings

    warnings.simplefilter("ignore")
    scanner = make_scanner()
    conn.send(("ready", rss_mib()))
    while True:
        msg = conn.recv()
        if msg is None:
            conn.send(("bye", rss_mib()))
            return
        i, name, data = msg
        rec = scan_one(scanner, data, name)
        conn.send(("rec", i, rec, rss_mib()))


class Pool1:
    """One worker process; a file that overruns its time limit kills and replaces it."""

    def __init__(self):
        import multiprocessing as mp

        self.ctx = mp.get_context("spawn")
        self._start()

    def _start(self):
        a, b = self.ctx.Pipe()
        self.proc = self.ctx.Process(target=_worker, args=(b,), daemon=True)
        self.proc.start()
        self.conn = a
        tag, self.rss_start = self.conn.recv()
        assert tag == "ready"

    def run(self, i: int, name: str, data: bytes, timeout: float) -> tuple[dict, float | None]:
        self.conn.send((i, name, data))
        if self.conn.poll(timeout):
            _, _, rec, rss = self.conn.recv()
            return rec, rss
        self.proc.kill()
        self.proc.join()
        self._start()
        return {"outcome": "timeout", "seconds": timeout}, None

    def close(self) -> float:
        self.conn.send(None)
        _, rss = self.conn.recv()
        self.proc.join(10)
        return rss


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--timeout", type=float, default=30.0, help="per-file time limit, seconds")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--records", type=Path, help="write one JSON line per mutant here")
    a = ap.parse_args(argv)

    seeds = make_seeds()
    pool = Pool1()
    t0 = time.time()
    outcomes: dict[str, int] = {}
    per_kind: dict[str, dict[str, int]] = {}
    bad: list[dict] = []
    rss_after_warmup = None
    rss_last = None
    slowest = (0.0, None)
    recs_out = open(a.records, "w") if a.records else None
    count = 0
    for i, name, how, data in mutants(seeds, a.n, a.seed):
        rec, rss = pool.run(i, f"fuzz-{i}-{name}", data, a.timeout)
        count += 1
        rec = {"i": i, "seed": name, "mutation": how, "bytes": len(data), **rec}
        outcomes[rec["outcome"]] = outcomes.get(rec["outcome"], 0) + 1
        kind = per_kind.setdefault(name, {})
        kind[rec["outcome"]] = kind.get(rec["outcome"], 0) + 1
        if rec["outcome"] in ("exception", "timeout"):
            bad.append(rec)
            rec["sha256"] = hashlib.sha256(data).hexdigest()
        if rss is not None:
            rss_last = rss
            if i == 49:
                rss_after_warmup = rss
        if rec["seconds"] > slowest[0]:
            slowest = (rec["seconds"], f"{name} {how}")
        if recs_out:
            recs_out.write(json.dumps(rec) + "\n")
        if (i + 1) % 500 == 0:
            print(f"{i + 1}/{a.n} in {time.time() - t0:.0f}s: {outcomes}", file=sys.stderr, flush=True)
    rss_end = pool.close()
    if recs_out:
        recs_out.close()
    res = {
        "mutants": a.n, "records": count, "seeds": {k: len(v) for k, v in seeds.items()},
        "per_file_timeout_s": a.timeout, "seconds": round(time.time() - t0, 1),
        "outcomes": outcomes, "per_seed": per_kind,
        "exceptions": sum(r["outcome"] == "exception" for r in bad),
        "timeouts": sum(r["outcome"] == "timeout" for r in bad),
        "slowest_file_s": round(slowest[0], 3), "slowest_file": slowest[1],
        "rss_mib": {"worker_ready": round(pool.rss_start, 1),
                    "after_50_files": round(rss_after_warmup, 1) if rss_after_warmup else None,
                    "last_file": round(rss_last, 1) if rss_last else None, "end": round(rss_end, 1)},
        "bad": bad[:50],
        "command": "python benchmarks/fuzz.py " + " ".join(sys.argv[1:] if argv is None else argv),
    }
    print(json.dumps({k: v for k, v in res.items() if k not in ("bad", "per_seed")}, indent=1))
    for r in bad[:10]:
        print(f"{r['outcome']}: {r['seed']} {r['mutation']}\n{r.get('detail', '')[-800:]}", file=sys.stderr)
    if a.json:
        a.json.write_text(json.dumps(res, indent=1) + "\n")
    return 1 if bad or count != a.n else 0


if __name__ == "__main__":
    sys.exit(main())
