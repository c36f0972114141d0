"""`genvis-trust datasets ...`: list the real-data sources, export one as a corpus, verify a corpus,
reconstruct a photo corpus through an autoencoder."""

from __future__ import annotations

import time
from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

from genvis_trust.datasets import (
    CorpusError,
    CorpusWriter,
    SourceError,
    get_source,
    list_sources,
    read_corpus,
)
from genvis_trust.datasets.corpus import MANIFEST

from .common import (
    EXIT_PROBLEM,
    EXIT_USAGE,
    check_path,
    command_line,
    err,
    fail,
    friendly_errors,
    out,
    print_json,
    progress,
)

app = typer.Typer(help="Real-data sources and corpora.", no_args_is_help=True)


@app.command("list")
def list_cmd(json_out: bool = typer.Option(False, "--json", help="Print JSON to stdout.")):
    """Show the built-in data sources (no download needed) and the folder layouts understood."""
    rows, unbuilt = [], []
    for name in list_sources():
        try:
            rows.append(get_source(name).describe())
        except SourceError as e:  # a source built by a recipe (photos-native) that is not built here
            unbuilt.append({"name": name, "description": list_sources()[name], "status": str(e)})
    layouts = {
        "PATH (folder)": "every image below a folder; --label sets real/generated",
        "PATH (ForenSynths)": "[split/][class/]0_real|1_fake/ (CNNDetection benchmarks)",
        "PATH (GenImage)": "[generator/]train|val/nature|ai/",
        "PATH (corpus)": "a folder with manifest.jsonl written by this toolkit",
    }
    if json_out:
        print_json({"builtin": rows, "not_built": unbuilt, "layouts": layouts})
        return
    t = Table(title="built-in sources (shipped inside installed packages)")
    for col in ("name", "images", "train/val/test images", "classes", "description"):
        t.add_column(col)
    for r in rows:
        s = r["images_per_split"]
        t.add_row(
            r["name"], str(r["images"]), f"{s['train']}/{s['val']}/{s['test']}",
            str(r["num_classes"] or "-"), r["description"],
        )
    out.print(t)
    for u in unbuilt:
        out.print(f"{u['name']}: {u['description']}; not built here: {escape(u['status'])}")
    t2 = Table(title="folder layouts (pass a path as SOURCE)")
    t2.add_column("source")
    t2.add_column("layout")
    for k, v in layouts.items():
        t2.add_row(k, escape(v))
    out.print(t2)


@app.command("export")
def export_cmd(
    source: str = typer.Argument(..., help="A built-in source name (see `datasets list`) or a folder path."),
    out_dir: Path = typer.Option(..., "--out", "-o", help="Corpus folder to write."),
    patch: int | None = typer.Option(None, help="Cut square patches of this side (default: whole images)."),
    n: int | None = typer.Option(None, "--n", help="Number of images/patches (default: all images)."),
    seed: int = typer.Option(0, help="Seed for splits and patch positions."),
    split: str = typer.Option("all", help="train, val, test or all. Splits are made by source image."),
    label: str | None = typer.Option(None, help="Label for a plain folder: real or generated."),
    image_format: str = typer.Option("png", "--format", help="png (lossless, default), jpeg (4:4:4, q95) or webp."),
    grid: Path | None = typer.Option(None, help="Also write a PNG grid of the first 64 images here."),
    resume: bool = typer.Option(False, help="Continue an interrupted export into the same folder."),
    overwrite: bool = typer.Option(False, "--force", "--overwrite", help="Replace an existing corpus in --out (only the files it wrote are deleted)."),
):
    """Write SOURCE as a corpus folder: images + manifest.jsonl (sha256 per image) + card.json.

    Example: genvis-trust datasets export builtin-photos --patch 32 --n 2000 --out /tmp/real32
    """
    split_opt = None if split == "all" else split
    opts = dict(patch=patch, n=n, seed=seed, split=split_opt)
    if label is not None:
        opts["label"] = label
    if resume and overwrite:
        fail("--resume and --force exclude each other", EXIT_USAGE)
    if (out_dir / MANIFEST).exists() and not (resume or overwrite):
        fail(
            f"{out_dir} already holds a corpus; pass --resume to continue it "
            "or --force to replace it",
            EXIT_USAGE,
        )
    with friendly_errors(SourceError, CorpusError):
        src = get_source(source, **opts)
        # checked before the writer starts, so a refused export leaves no empty corpus behind
        if any(it.label is None for it in src.split_items()):
            raise SourceError(f"{source}: images have no label; pass --label real|generated")
        total = len(src)
        card = {"data": src.spec(), "command": command_line()}
        t0 = time.time()
        preview = []
        with CorpusWriter(out_dir, card=card, image_format=image_format, resume=resume, overwrite=overwrite) as w:
            done = w.count
            with progress() as bar:
                task = bar.add_task(f"export {source}", total=total, completed=done)
                for i, s in enumerate(src):
                    if i < done:  # resume: the stream is deterministic, skip what is written
                        continue
                    if s.label is None:
                        raise SourceError(f"{source}: images have no label; pass --label real|generated")
                    w.add_sample(s)
                    if grid is not None and i % max(1, total // 64) == 0 and len(preview) < 64:
                        preview.append(s.image)
                    bar.advance(task)
            written = w.count
    if grid is not None and preview:
        from genvis_trust.report.grid import save_grid

        save_grid(grid, preview, cell=max(32, min(96, preview[0].shape[0])))
        err.print(f"grid: {grid}")
    if src.errors:
        err.print(f"[yellow]{len(src.errors)} input file(s) could not be read:[/]")
        for e in src.errors[:20]:
            err.print(f"  {e['path']}: {e['message']} [{e['code']}]", highlight=False)
    err.print(f"wrote {written} images to {out_dir} in {time.time() - t0:.1f}s")
    if src.errors:
        raise typer.Exit(EXIT_PROBLEM)


@app.command("verify")
def verify_cmd(
    corpus: Path = typer.Argument(..., help="Corpus folder (with manifest.jsonl)."),
    no_hashes: bool = typer.Option(False, "--no-hashes", help="Skip sha256 checks (paths and presence only)."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON to stdout."),
):
    """Read a corpus back and check every record: path inside the root, file present, sha256 matches."""
    check_path(corpus, "folder", "corpus folder")
    try:
        c = read_corpus(corpus, verify=True, hashes=not no_hashes)
    except CorpusError as e:
        if json_out:
            print_json({"ok": False, "error": str(e)})
        fail(str(e))
    summary = {"ok": True, **c.summary(), "hashes_checked": not no_hashes}
    if json_out:
        print_json(summary)
    else:
        out.print(f"[green]ok[/]: {summary['images']} images, labels {summary['labels']}, all sha256 match")


@app.command("reconstruct")
def reconstruct_cmd(
    corpus: Path = typer.Argument(..., help="A corpus of real photographs (e.g. the photos-native corpus)."),
    out_dir: Path = typer.Option(..., "--out", "-o", help="Corpus folder to write."),
    autoencoder: str = typer.Option("taef2", help="taef2 (bundled tiny FLUX.2 autoencoder), a bundled autoencoder-family generator (klae-photos), or an artifact folder of either."),
    limit: int | None = typer.Option(None, help="Reconstruct only the first N real images."),
    max_side: int | None = typer.Option(None, help="Reconstruct a centre crop of at most this side (big photos cost seconds per megapixel)."),
    device: str = typer.Option("auto", help="auto (CUDA when present), cpu or cuda."),
    resume: bool = typer.Option(False, help="Continue an interrupted run into the same folder."),
    overwrite: bool = typer.Option(False, "--force", "--overwrite", help="Replace an existing corpus in --out (only the files it wrote are deleted)."),
):
    """Pass every real photograph of CORPUS through an autoencoder's encode -> decode.

    The result is an *aligned* generated corpus: each image differs from its real original only by the decoder's traces, the cleanest training signal for a detector of latent-diffusion images. Records keep the original's group, split and codec.

    Example: genvis-trust datasets reconstruct ~/.cache/genvis-trust/photos-native --out recon-taef2
    """
    from genvis_trust.artifacts import ArtifactError
    from genvis_trust.generators.reconstruct import reconstruct_corpus

    if resume and overwrite:
        fail("--resume and --force exclude each other", EXIT_USAGE)
    if (out_dir / MANIFEST).exists() and not (resume or overwrite):
        fail(f"{out_dir} already holds a corpus; pass --resume to continue it or --force to replace it", EXIT_USAGE)
    check_path(corpus, "folder", "corpus folder")
    if not (corpus / MANIFEST).is_file():
        fail(f"{corpus}: not a corpus (no {MANIFEST}); build one with `datasets export` or scripts/build_photo_corpus.py", EXIT_USAGE)
    t0 = time.time()
    from genvis_trust.generators import GeneratorError

    with friendly_errors(SourceError, CorpusError, ArtifactError, GeneratorError), progress() as bar:
        task = bar.add_task(f"reconstruct with {autoencoder}", total=None)

        def step(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        res = reconstruct_corpus(
            corpus, out_dir, autoencoder=autoencoder, device=device, limit=limit, max_side=max_side,
            resume=resume, overwrite=overwrite, command=command_line(), progress=step,
        )
    for e in res["errors"][:20]:
        err.print(f"  {e['path']}: {e['error']}", highlight=False)
    err.print(f"wrote {res['written']} reconstructions to {out_dir} in {time.time() - t0:.1f}s")
    if res["errors"]:
        raise typer.Exit(EXIT_PROBLEM)
