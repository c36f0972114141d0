"""Provenance commands: ``keys init``, ``stamp``, ``verify``, ``watermark list|evaluate|train``.

Exit codes: 0 ok; 1 some input failed (stamp) or a file carries an Invalid C2PA
manifest or an image could not be read (verify; video, audio and PDF files are not
expected to have pixels); 2 usage error.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import typer

from .common import EXIT_PROBLEM, EXIT_USAGE, check_path, err, fail, out, print_json, progress
from .watermark_train import train_cmd

keys_app = typer.Typer(help="Signing keys for C2PA manifests.", no_args_is_help=True)
watermark_app = typer.Typer(help="Invisible-watermark backends.", no_args_is_help=True)
watermark_app.command("train")(train_cmd)  # the learned watermark's training: cli/watermark_train.py


@keys_app.command("init")
def keys_init(
    directory: Path = typer.Argument(..., help="Folder to create the test CA and signing key in."),
    organization: str = typer.Option("genvis-trust local test", help="Organization in the certificates."),
    days: int = typer.Option(365, help="Validity of the signing certificate in days."),
    force: bool = typer.Option(False, "--force", help="Overwrite existing keys."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
):
    """Create a local test CA and an ES256 C2PA signing certificate (keys mode 0600)."""
    from genvis_trust.provenance.keys import TEST_CA_WARNING, KeyError_, init_keys

    try:
        info = init_keys(directory, organization=organization, days=days, overwrite=force)
    except KeyError_ as e:
        fail(str(e), EXIT_USAGE)
    err.print(f"[yellow]warning:[/] {TEST_CA_WARNING}", highlight=False)
    if as_json:
        print_json(info)
    else:
        out.print(f"signing chain: {info['signer_chain']}\nsigning key:   {info['signer_key']} (0600)\n"
                  f"trust anchor:  {info['ca_certificate']}", highlight=False)


def _material(keys: Path | None, cert_chain: Path | None, private_key: Path | None):
    from genvis_trust.provenance.keys import KeyError_, load_signing_material

    folder = keys if keys is not None and (keys.is_dir() or not keys.exists()) else "keys"
    init = f"create one with `genvis-trust keys init {folder}` (a local test CA), or pass --cert-chain and --private-key"
    if keys is None and cert_chain is None and private_key is None:
        fail(f"stamping signs a C2PA manifest and needs keys: give a keys folder with --keys; {init}", EXIT_USAGE)
    if keys is not None:
        check_path(keys, "folder", "keys folder", init)
    for p, what in ((cert_chain, "certificate chain (--cert-chain)"), (private_key, "private key (--private-key)")):
        if p is not None:
            check_path(p, "file", what)
    try:
        return load_signing_material(keys, cert_chain=cert_chain, private_key=private_key)
    except KeyError_ as e:
        msg = str(e)
        if keys is not None and "not found" in msg:
            msg += f": {keys} holds no signing keys; {init}"
        fail(msg, EXIT_USAGE)


def stamp(
    images: list[Path] = typer.Argument(..., help="Images or videos to stamp (audio and PDF files get a signed C2PA manifest, no watermark), or one generated corpus folder (its manifest names the generator of each image)."),
    out_dir: Path = typer.Option(..., "--out", help="Output folder for stamped images."),
    keys: Path = typer.Option(None, "--keys", help="Folder made by `keys init`."),
    cert_chain: Path = typer.Option(None, "--cert-chain", help="Your PEM chain (signer first)."),
    private_key: Path = typer.Option(None, "--private-key", help="Your PEM private key (ES256)."),
    store_path: Path = typer.Option(None, "--store", help="Provenance store (default OUT/provenance.db)."),
    backend: str = typer.Option(None, help="Watermark backend (see `watermark list`); default dwtDctSvd for images, "
                                "dwtDctSvdVideo (a larger step, for H.264) for videos."),
    fmt: str = typer.Option("keep", "--format", help="keep | JPEG | PNG | WEBP."),
    generator: str = typer.Option("unknown", help="Generator name recorded in the manifest."),
    family: str = typer.Option(None, help="Generator family (gan, vae, diffusion, ...)."),
    checkpoint_sha256: str = typer.Option(None, "--checkpoint-sha256", help="Checkpoint hash."),
    edited: bool = typer.Option(False, help="Mark as compositeWithTrainedAlgorithmicMedia."),
    source_type: str = typer.Option(
        None, "--source-type",
        help="IPTC digital source type of the content: trainedAlgorithmicMedia (default for generators), "
             "compositeWithTrainedAlgorithmicMedia, digitalCapture or compositeCapture for photographs, ... "
             "Recorded in the C2PA manifest, the store and the watermark's generative flag."),
    upscale: int = typer.Option(None, help="Corpus input: enlarge images smaller than this side (e.g. 256, the watermark minimum) before stamping."),
    crf: int = typer.Option(18, "--crf", help="Video: libx264 quality of the watermarked MP4 (lower is better; 18 is visually lossless)."),
    as_json: bool = typer.Option(False, "--json", help="JSON Lines to stdout, one per image."),
    force: bool = typer.Option(False, "--force", help="Replace files of the same name already in --out (never an input itself)."),
):
    """Watermark, sign (C2PA) and record images and videos. JPEG is written 4:4:4, WebP
    lossless; a video gets the watermark in every frame, H.264 MP4 (audio copied) and a
    signed C2PA manifest.

    Given a corpus folder (from `generate`), writes a stamped corpus to --out whose manifest
    records the provenance applied to each image.

    Example: genvis-trust stamp corpora/gan --out corpora/gan-stamped --keys keys --upscale 256"""
    from genvis_trust.provenance.c2pa_manifest import SOURCE_TYPES, source_type_uri
    from genvis_trust.provenance.stamp import STAMP_FORMATS
    from genvis_trust.provenance.store import ProvenanceStore
    from genvis_trust.provenance.watermarks import DEFAULT_BACKEND, WatermarkError, get_watermark

    material = _material(keys, cert_chain, private_key)
    try:
        get_watermark(backend or DEFAULT_BACKEND)
    except WatermarkError as e:
        fail(str(e), EXIT_USAGE)
    if source_type is not None:
        try:
            source_type_uri(source_type)
        except ValueError:
            fail(f"--source-type {source_type!r} is not an IPTC digital source type; choose from "
                 f"{', '.join(SOURCE_TYPES)}", EXIT_USAGE)
        if edited and source_type.rsplit("/", 1)[-1] != "compositeWithTrainedAlgorithmicMedia":
            fail("--edited means compositeWithTrainedAlgorithmicMedia; pass --edited or --source-type, not both",
                 EXIT_USAGE)
    if fmt.lower() != "keep" and fmt.upper().replace("JPG", "JPEG") not in STAMP_FORMATS:
        fail(f"--format must be keep or one of {', '.join(STAMP_FORMATS)}", EXIT_USAGE)
    # opened (and --out created) only when the first item is about to be written: a run that
    # fails before that leaves no folder behind; closed on every exit, so no -wal/-shm stays
    opened: list[ProvenanceStore] = []

    def store() -> ProvenanceStore:
        if not opened:
            opened.append(ProvenanceStore(store_path or out_dir / "provenance.db"))
        return opened[0]

    try:
        _stamp_inputs(images, out_dir, store, material, backend, fmt, generator, family, checkpoint_sha256, edited,
                      source_type, upscale, crf, as_json, force)
    finally:
        for st in opened:
            st.close()


def _stamp_inputs(images, out_dir, store, material, backend, fmt, generator, family, checkpoint_sha256, edited,
                  source_type, upscale, crf, as_json, force):
    from genvis_trust.io import ImageLoadError, decode_image, read_bytes, sniff_media_type
    from genvis_trust.provenance.stamp import (
        EXTENSIONS,
        STAMP_FORMATS,
        StampError,
        StampOptions,
        stamp_array,
        stamp_media,
    )
    from genvis_trust.provenance.watermarks import DEFAULT_BACKEND, WatermarkError
    from genvis_trust.video import video_media_type
    from genvis_trust.video.stamp import VIDEO_BACKEND, stamp_video

    corpus = len(images) == 1 and (images[0] / "manifest.jsonl").is_file()
    if not corpus and source_type is None and not edited and generator == "unknown":
        # what the content is goes into the manifest, the store and the mark: say what was assumed
        err.print("note: no --generator or --source-type given: recording trainedAlgorithmicMedia "
                  "(generated); pass --source-type digitalCapture for photographs", highlight=False)
    if corpus:
        if source_type is not None and source_type.rsplit("/", 1)[-1] != "trainedAlgorithmicMedia":
            fail("a generated corpus is stamped as trainedAlgorithmicMedia; --source-type applies to image files",
                 EXIT_USAGE)
        _stamp_corpus(images[0], out_dir, store(), material, backend or DEFAULT_BACKEND, fmt, upscale, as_json)
        return
    failures = 0
    written: set[Path] = set()
    # what the content is: one options value for every medium (videos, audio, PDF)
    what = StampOptions(generator=generator, family=family, checkpoint_sha256=checkpoint_sha256, edited=edited,
                        source_type=source_type)
    with progress() as bar:
        task = bar.add_task("stamping", total=len(images))
        for p in images:
            try:
                data = read_bytes(p)
                media = sniff_media_type(data)
                if video_media_type(data[:64]):  # every frame watermarked, the MP4 signed
                    dest = out_dir / (Path(p).stem + ".mp4")
                    _check_destination(Path(p), dest, written, force)
                    vres = stamp_video(data, dest, store=store(), material=material, backend=backend or VIDEO_BACKEND,
                                       options=replace(what, title=Path(p).name), crf=crf)
                    _stamped(p, vres, as_json, f"{vres.frames} frames watermarked (PSNR {vres.psnr_db} dB), "
                                                f"H.264 CRF {crf}, C2PA signed")
                    bar.advance(task)
                    continue
                if media and not media.startswith("image/"):  # audio, PDF: signed, not watermarked
                    mres = stamp_media(data, out_dir / Path(p).name, store=store(), material=material,
                                       options=replace(what, title=Path(p).name))
                    _stamped(p, mres, as_json, f"{media}: C2PA signed, no watermark")
                    bar.advance(task)
                    continue
                img = decode_image(data, path=str(p))
                f = img.format if fmt.lower() == "keep" else fmt.upper().replace("JPG", "JPEG")
                if f not in STAMP_FORMATS:
                    f = "PNG"
                dest = out_dir / (Path(p).stem + EXTENSIONS[f])
                _check_destination(Path(p), dest, written, force)
                res = stamp_array(img.array, dest, store=store(), material=material, fmt=f, backend=backend or DEFAULT_BACKEND,
                                  generator=generator, family=family, checkpoint_sha256=checkpoint_sha256,
                                  edited=edited, title=Path(p).name, source_type=source_type)
                if as_json:
                    print(json.dumps({"input": str(p), **res.to_dict()}, sort_keys=True), flush=True)
                else:
                    out.print(f"{p} -> {res.path}  record {res.record_id}  {res.source_type}  PSNR {res.psnr_db} dB",
                              highlight=False)
            except (ImageLoadError, WatermarkError, StampError, OSError) as e:
                failures += 1
                err.print(f"[red]failed:[/] {e}", highlight=False)
                if as_json:
                    print(json.dumps({"input": str(p), "error": str(e)}), flush=True)
            bar.advance(task)
    if failures:
        raise typer.Exit(EXIT_PROBLEM)


def _stamped(src: Path, res, as_json: bool, what: str) -> None:
    if as_json:
        print(json.dumps({"input": str(src), **res.to_dict()}, sort_keys=True), flush=True)
    else:
        out.print(f"{src} -> {res.path}  record {res.record_id}  {res.source_type}  {what}", highlight=False)


def _check_destination(src: Path, dest: Path, written: set[Path], force: bool) -> None:
    """Never replace an input, a file written earlier in this run, or (without --force) a
    file that was already there."""
    from genvis_trust.provenance.stamp import StampError

    if dest in written:
        raise StampError(f"{src}: another input of this run was already stamped to {dest}; stamp them into different --out folders")
    if dest.exists() and dest.resolve() == src.resolve():
        raise StampError(f"{src}: --out would replace this input itself; choose another --out")
    if dest.exists() and not force:
        raise StampError(f"{src}: {dest} already exists; pass --force to replace it")
    written.add(dest)


def _stamp_corpus(corpus, out_dir, store, material, backend, fmt, upscale, as_json):
    from genvis_trust.datasets import CorpusError, read_corpus
    from genvis_trust.provenance.stamp import stamp_corpus

    f = "PNG" if fmt.lower() == "keep" else fmt.upper().replace("JPG", "JPEG")
    try:
        total = len(read_corpus(corpus, hashes=False))
        with progress() as bar:
            task = bar.add_task("stamping corpus", total=total)
            res = stamp_corpus(corpus, out_dir, store=store, material=material, backend=backend, fmt=f,
                               upscale=upscale, on_image=lambda _: bar.advance(task))
    except CorpusError as e:
        fail(str(e), EXIT_USAGE)
    finally:
        store.close()
    if as_json:
        print_json(res)
    else:
        out.print(f"stamped {res['stamped']} images into corpus {res['out']}", highlight=False)
    for fl in res["failures"][:20]:
        err.print(f"[red]failed:[/] {fl['error']}", highlight=False)
    if res["failures"]:
        raise typer.Exit(EXIT_PROBLEM)


def verify(
    images: list[Path] = typer.Argument(..., help="Images to verify."),
    trust_anchors: Path = typer.Option(None, "--trust-anchors", help="PEM bundle of trusted CA certificates."),
    store_path: Path = typer.Option(None, "--store", help="Provenance store to look records up in."),
    backends: str = typer.Option("dwtDctSvd,dwtDct", help="Watermark backends to read, comma separated, or 'all' (adds rivaGan: >1 s/image on CPU)."),
    no_known: bool = typer.Option(False, "--no-known-generators", help="Skip SDXL/SD watermark checks."),
    fetch_remote: bool = typer.Option(False, "--fetch-remote", help="Fetch remote C2PA manifests (default: report their URL, offline)."),
    as_json: bool = typer.Option(False, "--json", help="JSON to stdout: one document, or JSON Lines with several images."),
    frames: int = typer.Option(16, "--frames", help="Video: frames read, spread evenly (plus up to 8 at scene cuts); the watermark is read pooled over them."),
):
    """Report C2PA (images, video, audio, PDF: every format c2pa-python reads), watermarks,
    known-generator marks, metadata markers and store records. Pixel signals run where
    there are pixels (a video's: on sampled frames); a file whose pixels do not decode
    keeps its C2PA report."""
    from genvis_trust.provenance.store import ProvenanceStore
    from genvis_trust.provenance.verify import verify_paths
    from genvis_trust.provenance.watermarks import list_watermarks

    from .scan import video_options

    pem = None
    if trust_anchors is not None:
        check_path(trust_anchors, "file", "trust anchor file (--trust-anchors)",
                   "give a PEM file of trusted CA certificates, e.g. the ca.cert.pem that `keys init` writes")
        pem = trust_anchors.read_text()
    names = tuple(b.strip() for b in backends.split(",") if b.strip())
    unknown = [b for b in names if b != "all" and b not in list_watermarks()]
    if unknown:
        fail(f"unknown backend(s) {unknown}; choose from {sorted(list_watermarks())} or 'all'", EXIT_USAGE)
    if store_path is not None:
        check_path(store_path, "file", "provenance store (--store)",
                   "give the provenance.db that `stamp` wrote (by default in its --out folder)")
    store = ProvenanceStore(store_path) if store_path else None
    problems = 0
    for p in images:
        rep = verify_paths([p], trust_anchors_pem=pem, store=store, backends=names, known_generators=not no_known,
                           fetch_remote=fetch_remote, video=video_options(frames, True, 1800.0))[0]
        media = str(rep.input.media_type or "")
        pixels_expected = not media or media.startswith("image/")
        no_pixels_to_check = not pixels_expected and rep.error and rep.error.get("code") in ("not_an_image", "too_large")
        if (rep.error and not no_pixels_to_check) or (rep.c2pa is not None and rep.c2pa.state == "Invalid"):
            problems += 1
        if as_json:
            d = rep.to_dict()
            if len(images) == 1:
                print_json(d)
            else:
                print(json.dumps(d, sort_keys=True, default=str), flush=True)
        else:
            _print_report(rep)
    if problems:
        raise typer.Exit(EXIT_PROBLEM)


def _print_report(rep) -> None:
    from rich.markup import escape

    out.print(f"[bold]{rep.path}[/]", highlight=False)
    media = str(rep.input.media_type or "")
    if rep.error and rep.error.get("code") == "not_an_image" and media and not media.startswith("image/"):
        out.print(f"  pixels: not checked ({media}); C2PA and metadata read from the bytes", highlight=False)
    elif rep.error:
        out.print(f"  [red]pixels:[/] {escape(rep.error['message'])} \\[{rep.error['code']}]", highlight=False)
    elif rep.input.video:
        v = rep.input.video
        out.print(f"  frames: {v['frames_examined']} examined ({v['scene_cuts']} at scene cuts) of {v['frames_decoded']} decoded, "
                  f"{v['width']}x{v['height']} {v['codec']}", highlight=False)
    for e in rep.evidence:
        mark = {"none": "·", "tampered": "[red]✗[/]"}.get(e.indicates, "[green]●[/]")
        out.print(f"  {mark} \\[{e.strength}] {e.kind}: {escape(e.summary)}", highlight=False)


@watermark_app.command("list")
def watermark_list(as_json: bool = typer.Option(False, "--json")):
    """The registered watermark backends."""
    from genvis_trust.provenance.watermarks import get_watermark, list_watermarks

    rows = {n: {"description": d, "bits": get_watermark(n).n_bits, "min_side": get_watermark(n).min_side}
            for n, d in list_watermarks().items()}
    if as_json:
        print_json(rows)
    else:
        for n, r in rows.items():
            out.print(f"{n:10s} {r['bits']:3d} bits  min {r['min_side']}px  {r['description']}", highlight=False)


@watermark_app.command("evaluate")
def watermark_evaluate(
    backend: str = typer.Option("dwtDctSvd", "--backend", help="Backend to evaluate."),
    data: str = typer.Option("builtin-photos", "--data", help="Dataset source name or a folder."),
    n: int = typer.Option(12, help="Number of images."),
    size: int = typer.Option(512, help="Square patch size taken from each source image."),
    attacks: str = typer.Option("standard", help="'standard' or comma-separated perturbation specs."),
    fpr: float = typer.Option(0.01, help="False-positive rate at which the detection rate is reported."),
    seed: int = typer.Option(0),
    out_dir: Path = typer.Option(None, "--out", help="Folder for robustness.json, .md table and .png chart."),
    as_json: bool = typer.Option(False, "--json"),
):
    """Robustness of a backend against the shared perturbations."""
    from genvis_trust.provenance.robustness import evaluate_backend, load_eval_images, write_outputs
    from genvis_trust.provenance.watermarks import WatermarkError, get_watermark

    try:
        get_watermark(backend)
        images = load_eval_images(data, n=n, size=size, seed=seed)
    except (WatermarkError, ValueError) as e:
        fail(str(e), EXIT_USAGE)
    result = evaluate_backend(backend, images, attacks=attacks, target_fpr=fpr, seed=seed, log=err.print)
    if out_dir:
        paths = write_outputs(result, out_dir)
        err.print(f"wrote {', '.join(str(p) for p in paths)}", highlight=False)
    if as_json:
        print_json(result)
    else:
        from genvis_trust.provenance.robustness import markdown_table

        typer.echo(markdown_table(result))
