"""`genvis-trust demo`: the whole toolkit on built-in data, ending in an audit report.

It builds a folder a media auditor might receive, with known truth, and audits it:

- ``real/``: 256x256 crops of built-in photographs from the *test* split (never seen by
  the bundled detector), stored as JPEG;
- ``generated/``: fresh samples from every bundled generator (32x32 PNG);
- ``stamped/``: generated samples enlarged to 256x256 (the watermark's minimum side) and
  stamped: invisible watermark + signed C2PA manifest + provenance-store record;
- ``stripped/``: the stamped images with metadata stripped and re-encoded as JPEG 80;
- ``broken/``: files an audit must survive: empty, not an image, truncated.

The demo owns only the entries it writes (``DEMO_ENTRIES``) and marks its folder with
``.genvis-demo``; it never deletes anything else. A non-empty folder without that mark is
refused unless ``--force``, and even then only the demo's own entries are replaced.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import typer

from genvis_trust.atomic import atomic_write_bytes, atomic_write_text

from .common import EXIT_USAGE, err, fail, out, progress

DEMO_MARK = ".genvis-demo"
DEMO_ENTRIES = ("images", "keys", "audit", "provenance.db", "truth.json")


DEMO_GENERATORS = ("diffusion-digits", "flow-photos", "gan-digits", "pixelcnn-photos", "vae-photos")


def prepare_out(out_dir: Path, force: bool) -> None:
    """Make ``out_dir`` ready for a demo run, removing only what an earlier demo wrote."""
    if out_dir.exists() and not out_dir.is_dir():
        fail(f"{out_dir}: exists and is not a folder; choose another --out", EXIT_USAGE)
    others = sorted(p.name for p in out_dir.iterdir()) if out_dir.is_dir() else []
    if others and not (out_dir / DEMO_MARK).is_file() and not force:
        shown = ", ".join(others[:5]) + (", ..." if len(others) > 5 else "")
        fail(f"{out_dir}: not empty ({shown}) and not made by `genvis-trust demo`; choose another "
             f"--out, or pass --force to write the demo beside these files (only "
             f"{', '.join(DEMO_ENTRIES)} would be replaced)", EXIT_USAGE)
    out_dir.mkdir(parents=True, exist_ok=True)
    # marked before anything is written: an interrupted run can be rerun without --force
    atomic_write_text(out_dir / DEMO_MARK, "written by `genvis-trust demo`; its entries: " + " ".join(DEMO_ENTRIES) + "\n")
    for name in DEMO_ENTRIES:
        p = out_dir / name
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        elif p.exists() or p.is_symlink():
            p.unlink()  # a link is removed, never what it points to


def demo_cmd(
    out_dir: Path = typer.Option(Path("genvis-demo"), "--out", "-o", help="Folder to build the demo in: new, empty, or an earlier demo's (its entries are replaced, nothing else)."),
    force: bool = typer.Option(False, "--force", help="Write into a non-empty folder the demo did not make; only the demo's own entries are replaced, other files are kept."),
    n: int = typer.Option(6, help="Samples per bundled generator."),
    seed: int = typer.Option(0, help="Seed for crops and samples."),
    device: str = typer.Option("auto", help="auto, cpu or cuda."),
):
    """Build a folder of real, generated, stamped, stripped and broken images from built-in
    data, audit it with every signal, and print where the report is."""
    import cv2
    import numpy as np

    from genvis_trust.audit import run_audit
    from genvis_trust.datasets import get_source
    from genvis_trust.generators import list_bundled, load_generator
    from genvis_trust.generators.sampling import generate_images
    from genvis_trust.io import encode_image, load_image
    from genvis_trust.provenance.keys import init_keys, load_signing_material
    from genvis_trust.provenance.stamp import stamp_array
    from genvis_trust.provenance.store import ProvenanceStore

    t0 = time.time()
    prepare_out(out_dir, force)
    images = out_dir / "images"
    for sub in ("real", "generated", "stamped", "stripped", "broken"):
        (images / sub).mkdir(parents=True)
    truth: dict[str, str] = {}

    err.print("1/4 real photographs (test split, 256x256 JPEG)")
    for i, s in enumerate(get_source("builtin-photos", patch=256, n=n, seed=seed, split="test", scales=(1.0, 0.5))):
        name = f"real/photo{i:02d}.jpg"
        atomic_write_bytes(images / name, encode_image(s.image, "JPEG", quality=90))
        truth[name] = "real"

    # the five 32 px models: quick to sample and what the bundled detector was trained on.
    # The real-resolution ones (klae/ldm/sr4/inpaint/gan-128) are mostly outside its domain or
    # missed (benchmarks/results/detector-on-bundled.md); the demo does not pretend otherwise.
    demo_models = [m for m in list_bundled() if m in DEMO_GENERATORS]
    err.print(f"2/4 samples from {len(demo_models)} bundled 32 px generators "
              "(the real-resolution ones: benchmarks/detector_on_bundled.py)")
    samples = []
    for model_name in demo_models:
        g = load_generator(model_name, device)
        for i, img, _, _ in generate_images(g, n, seed=seed, batch=n):
            name = f"generated/{model_name}_{i:02d}.png"
            atomic_write_bytes(images / name, encode_image(img, "PNG"))
            truth[name] = "generated"
            samples.append((model_name, g.family, img))

    err.print("3/4 stamping: watermark + signed C2PA manifest + provenance record")
    init_keys(out_dir / "keys")
    material = load_signing_material(out_dir / "keys")
    store_path = out_dir / "provenance.db"
    store = ProvenanceStore(store_path)
    try:
        for k, (model_name, family, img) in enumerate(samples[:: max(1, len(samples) // 4)][:4]):
            big = cv2.resize(img, (256, 256), interpolation=cv2.INTER_CUBIC)
            dst = images / "stamped" / f"{model_name}_{k}.png"
            stamp_array(big, dst, store=store, material=material, generator=f"genvis-trust:{model_name}", family=family)
            truth[f"stamped/{dst.name}"] = "generated"
            stripped = images / "stripped" / f"{model_name}_{k}.jpg"
            atomic_write_bytes(stripped, encode_image(load_image(dst).array, "JPEG", quality=80))
            truth[f"stripped/{stripped.name}"] = "generated"
    finally:
        store.close()
    atomic_write_bytes(images / "broken" / "empty.jpg", b"")
    atomic_write_bytes(images / "broken" / "notes.png", b"this is a text file named .png\n")
    jpeg = encode_image(np.full((64, 64, 3), 128, np.uint8), "JPEG")
    atomic_write_bytes(images / "broken" / "truncated.jpg", jpeg[: len(jpeg) // 2])
    for name in ("broken/empty.jpg", "broken/notes.png", "broken/truncated.jpg"):
        truth[name] = "error"
    atomic_write_text(out_dir / "truth.json", json.dumps(truth, indent=2, sort_keys=True) + "\n")

    err.print("4/4 audit with every signal (C2PA, metadata, watermarks, store, detector)")
    t_audit = time.time()
    with progress() as bar:
        task = bar.add_task("audit", total=len(truth))
        pages = bar.add_task("report", total=len(truth) + 1, start=False)  # its clock starts with the report

        def on_report(k: int, n: int) -> None:
            if k == 0:
                bar.start_task(pages)
            bar.update(pages, completed=k, total=n)

        summary = run_audit(
            images, out_dir / "audit",
            scanner_kwargs={"device": device, "store": store_path, "trust_anchors": out_dir / "keys" / "ca.cert.pem"},
            on_result=lambda r: bar.advance(task), on_report=on_report,
        )
    t_report = time.time() - t_audit - summary["elapsed_s"]
    recs = [json.loads(x) for x in (out_dir / "audit" / "results.jsonl").read_text().splitlines()]
    hits = {"real": [0, 0], "generated": [0, 0], "error": [0, 0]}
    for r in recs:
        want = truth.get(r["input"])
        if want is None:
            continue
        ok = {"real": r["verdict"] == "no_evidence", "error": r["verdict"] == "error"}.get(
            want, r["verdict"] in ("generated", "likely_generated"))
        hits[want][0] += ok
        hits[want][1] += 1
    # the same figure the report shows; building the folder and the report are timed apart
    out.print(f"audited {summary['records']} files in {summary['elapsed_s']:.1f}s "
              f"(demo folder built in {t_audit - t0:.0f}s, report written in {t_report:.1f}s): "
              + ", ".join(f"{k} {v}" for k, v in sorted(summary["verdicts"].items())))
    out.print("against the known truth: "
              + f"real photos with no evidence {hits['real'][0]}/{hits['real'][1]}, "
              + f"generated images flagged {hits['generated'][0]}/{hits['generated'][1]}, "
              + f"broken files reported as errors {hits['error'][0]}/{hits['error'][1]}")
    out.print(f"report: {out_dir / 'audit' / 'report.html'}  (records: {out_dir / 'audit' / 'results.jsonl'})")
