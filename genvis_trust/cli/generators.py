"""`genvis-trust generators ...` and `genvis-trust generate`: list, sample, evaluate, interpolate."""

from __future__ import annotations

import time
from pathlib import Path

import typer
from rich.table import Table

from .common import command_line, err, friendly_errors, out, print_json, progress

app = typer.Typer(help="Built-in generator families and models: list, evaluate, interpolate.", no_args_is_help=True)


def _errors():
    from genvis_trust.datasets import CorpusError, SourceError
    from genvis_trust.generators import GeneratorError

    return GeneratorError, SourceError, CorpusError


@app.command("list")
def list_cmd(json_out: bool = typer.Option(False, "--json", help="Print JSON to stdout.")):
    """Show the generator families and the bundled pretrained models (usable by name)."""
    from genvis_trust.generators import generator_class, list_bundled, list_generators
    from genvis_trust.generators.artifact import read_json

    fams = list_generators()
    bundled = []
    for name, path in list_bundled().items():
        card = read_json(path / "card.json")
        cfg = read_json(path / "config.json")
        family = cfg["family"]
        cls = generator_class(family)
        size = cfg["config"].get("image_size")
        i2i = getattr(cls, "image_to_image", False)
        if i2i:  # image-to-image: default-size crops of photos in, scaled by the family out
            size = cls.sampler_defaults["size"] * cls.output_scale
        bundled.append({
            "name": name, "family": family, "num_classes": cfg["config"].get("num_classes", 0),
            "output_px": size, "kind": "image-to-image" if i2i else "sampler",
            "data": card.get("data", {}).get("source"), "steps": card.get("steps"),
            "params": card.get("params"), "checkpoint_sha256": card.get("weights_sha256") or card.get("checkpoint_sha256"),
            "metrics": card.get("metrics", {}), "command": card.get("command"),
        })
    if json_out:
        print_json({"families": fams, "bundled": bundled})
        return
    t = Table(title="generator families")
    t.add_column("family")
    t.add_column("description")
    for k, v in fams.items():
        t.add_row(k, v)
    out.print(t)
    t2 = Table(title="bundled models (use the name as MODEL)")
    for col in ("name", "family", "kind", "output px", "classes", "data", "steps", "params"):
        t2.add_column(col)
    for b in bundled:
        t2.add_row(b["name"], b["family"], b["kind"], str(b["output_px"]), str(b["num_classes"] or "-"),
                   str(b["data"]), str(b["steps"]), f"{b['params']:,}" if b["params"] else "-")
    out.print(t2)


def generate_cmd(
    ctx: typer.Context,
    model: str = typer.Argument(..., help="A bundled model name (see `generators list`) or an artifact folder."),
    n: int = typer.Option(64, "--n", help="Number of images."),
    seed: int = typer.Option(0, help="Base seed; image i uses image_seed(seed, i), recorded per image."),
    out_dir: Path = typer.Option(..., "--out", "-o", help="Corpus folder to write."),
    grid: Path | None = typer.Option(None, help="Also write a PNG grid of the first 64 images."),
    batch: int = typer.Option(64, help="Images per network batch (memory stays constant in --n)."),
    class_id: int | None = typer.Option(None, "--class-id", help="Class for conditional models (default: cycle 0..K-1)."),
    sampler: str | None = typer.Option(None, help="Diffusion: ancestral or ddim."),
    steps: int | None = typer.Option(None, help="Diffusion DDIM steps (chosen at sampling time)."),
    eta: float | None = typer.Option(None, help="Diffusion DDIM eta (0: deterministic)."),
    guidance: float | None = typer.Option(None, help="Diffusion classifier-free guidance scale (1: none)."),
    temperature: float | None = typer.Option(None, help="VAE / flow / PixelCNN sampling temperature."),
    truncation: float | None = typer.Option(None, help="GAN latent truncation factor (<= 1)."),
    input_source: str | None = typer.Option(None, "--input", help="Image-to-image models: the source whose photographs are transformed (default builtin-photos; e.g. photos-native, or photos-native:train for one split)."),
    size: int | None = typer.Option(None, "--size", help="Image-to-image models: side of the native-resolution input crop (default 256; super-resolution outputs 4x)."),
    device: str = typer.Option("auto", help="auto (CUDA when present), cpu, cuda ..."),
    threads: int | None = typer.Option(None, help="CPU threads."),
    image_format: str = typer.Option("png", "--format", help="png (default), jpeg or webp."),
    resume: bool = typer.Option(False, help="Continue an interrupted run into the same --out."),
    overwrite: bool = typer.Option(False, "--force", "--overwrite", help="Replace an existing corpus in --out (only the files it wrote are deleted)."),
    json_out: bool = typer.Option(False, "--json", help="Print a JSON summary to stdout."),
    video: bool = typer.Option(False, "--video", help="Write --n H.264 MP4 clips instead of images: latent walks (gan, vae) or frame sequences (the other families)."),
    frames: int = typer.Option(16, "--frames", help="With --video: frames per clip."),
    fps: float = typer.Option(8.0, "--fps", help="With --video: frames per second."),
    crf: int = typer.Option(18, "--crf", help="With --video: libx264 quality (lower is better)."),
):
    """Sample MODEL into a corpus (images + manifest.jsonl with family, checkpoint sha256, seed per image).

    Image-to-image models (autoencoder, super-resolution, inpainting) transform crops of real
    photographs drawn from each image's seed; the record names the photograph, and inpainting
    corpora store each mask under masks/ beside the image.

    Example: genvis-trust generate diffusion-digits --n 100 --sampler ddim --steps 20 --out /tmp/gen --grid /tmp/gen.png
    Clips:   genvis-trust generate vae-photos --video --n 8 --frames 24 --out /tmp/clips
    """
    from genvis_trust.generators import load_generator, set_cpu_threads
    from genvis_trust.generators.sampling import generate_to_corpus, sampler_settings

    with friendly_errors(*_errors()):
        set_cpu_threads(threads)
        lg = load_generator(model, device, info=True)
        opts = dict(sampler=sampler, steps=steps, eta=eta, guidance=guidance, temperature=temperature,
                    truncation=truncation, input=input_source, size=size)
        given = {k: v for k, v in opts.items() if v is not None}
        sampler_settings(lg.model, **given)  # fail on unknown settings before writing anything
        if video:
            _generate_clips(ctx, lg, out_dir, n, frames, fps, crf, seed, class_id, resume, overwrite, json_out, given)
            return
        t0 = time.time()
        with progress() as bar:
            task = bar.add_task(f"generate {lg.name}", total=n)
            res = generate_to_corpus(
                lg, out_dir, n=n, seed=seed, batch=batch, class_id=class_id, image_format=image_format,
                resume=resume, overwrite=overwrite, command=command_line(ctx),
                on_image=lambda i: bar.update(task, completed=i + 1), keep=64 if grid else 0, **given,
            )
    dt = time.time() - t0
    new = res["images"] - res["resumed_from"]
    if grid is not None and res["preview"]:
        from genvis_trust.report.grid import save_grid

        k = lg.model.num_classes  # conditional: one column per class, so rows read 0..K-1
        save_grid(grid, res["preview"], cell=min(256, max(32, res["preview"][0].shape[0])),
                  ncols=k if 1 < k <= 16 and class_id is None else None)
        err.print(f"grid: {grid}")
    err.print(f"wrote {new} images to {out_dir} in {dt:.1f}s ({new / max(dt, 1e-9):.1f} images/s)")
    if json_out:
        res.pop("preview")
        print_json({**res, "seconds": round(dt, 2)})


def _generate_clips(ctx, lg, out_dir, n, frames, fps, crf, seed, class_id, resume, overwrite, json_out, given):
    from genvis_trust.video.generate import generate_clips_to_corpus

    t0 = time.time()
    with progress() as bar:
        task = bar.add_task(f"clips {lg.name}", total=n)
        res = generate_clips_to_corpus(lg, out_dir, n=n, frames=frames, fps=fps, crf=crf, seed=seed, class_id=class_id,
                                       resume=resume, overwrite=overwrite, command=command_line(ctx),
                                       on_clip=lambda i: bar.update(task, completed=i + 1), **given)
    dt = time.time() - t0
    new = res["clips"] - res["resumed_from"]
    err.print(f"wrote {new} clips ({res['kind']}, {frames} frames each) to {out_dir} in {dt:.1f}s")
    if json_out:
        print_json({**res, "seconds": round(dt, 2)})


@app.command("evaluate")
def evaluate_cmd(
    model: str = typer.Argument(..., help="A bundled model name or an artifact folder."),
    ref: str | None = typer.Option(None, help="Reference source (default: the model's training source, split test)."),
    ref_split: str = typer.Option("test", help="Split of the reference source (held out by default)."),
    n: int = typer.Option(500, "--n", help="Generated images (and at most as many reference images)."),
    seed: int = typer.Option(1234, help="Base seed for the generated images."),
    features: str = typer.Option("toolkit", help="Feature network: 'toolkit' (bundled, trained on built-in data) or 'inception'."),
    inception_weights: Path | None = typer.Option(None, help="torchvision/pt_inception-format Inception-v3 weights (.pth or .safetensors) for --features inception."),
    sampler: str | None = typer.Option(None, help="Diffusion: ancestral or ddim."),
    steps: int | None = typer.Option(None, help="Diffusion DDIM steps."),
    guidance: float | None = typer.Option(None, help="Diffusion guidance scale."),
    temperature: float | None = typer.Option(None, help="VAE / flow / PixelCNN temperature."),
    input_source: str | None = typer.Option(None, "--input", help="Image-to-image models: source of the input photographs."),
    size: int | None = typer.Option(None, "--size", help="Image-to-image models: input crop side."),
    baselines: bool = typer.Option(True, "--baselines/--no-baselines", help="Also score blurred real train crops and uniform noise at the same N."),
    device: str = typer.Option("auto", help="auto, cpu, cuda ..."),
    threads: int | None = typer.Option(None, help="CPU threads."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON to stdout."),
):
    """FID, KID, precision/recall, density/coverage (and, for labeled references, mode coverage and
    class accuracy) of MODEL's samples against held-out real images of the size the model
    outputs, beside trivial baselines (blurred real, noise) at the same N. Every number names
    N, the reference and the feature network."""
    from genvis_trust.generators import load_generator, set_cpu_threads
    from genvis_trust.generators.metrics import evaluate_generator

    with friendly_errors(*_errors()):
        set_cpu_threads(threads)
        lg = load_generator(model, device, info=True)
        opts = {k: v for k, v in dict(sampler=sampler, steps=steps, guidance=guidance, temperature=temperature,
                                      input=input_source, size=size).items() if v is not None}
        rep = evaluate_generator(lg, ref=ref, ref_split=ref_split, n=n, seed=seed, features=features,
                                 inception_weights=inception_weights, device=device, with_baselines=baselines,
                                 **opts)
    if json_out:
        print_json(rep)
        return
    t = Table(title=f"{lg.name}: {rep['n_generated']} generated vs {rep['n_reference']} {rep['reference']} "
                    f"({rep['image_size']} px)")
    t.add_column("metric")
    t.add_column(lg.name)
    base = rep.get("baselines", {})
    for name in base:
        t.add_column(name)

    def fmt(v):
        return f"{v:.4g}" if isinstance(v, float) else str(v)

    for k, v in rep["metrics"].items():
        t.add_row(k, fmt(v), *(fmt(b.get(k, "")) for b in base.values()))
    out.print(t)
    err.print(f"feature network: {rep['feature_network']['name']} ({rep['feature_network']['description']})")


@app.command("interpolate")
def interpolate_cmd(
    model: str = typer.Argument(..., help="A VAE or GAN: bundled model name or artifact folder."),
    out_png: Path = typer.Option(..., "--out", "-o", help="PNG strip to write."),
    seeds: tuple[int, int] = typer.Option((0, 1), help="Two seeds whose latents are interpolated."),
    images: tuple[Path, Path] | None = typer.Option(None, help="VAE: two image files to interpolate between (encoded)."),
    frames: int = typer.Option(8, help="Images in the strip, ends included."),
    rows: int = typer.Option(1, help="Rows: consecutive seed pairs (seed, seed+1), (seed+2, seed+3), ..."),
    class_id: int | None = typer.Option(None, "--class-id", help="Class for a conditional GAN."),
    device: str = typer.Option("auto", help="auto, cpu, cuda ..."),
):
    """Write an image strip walking the latent space between two seeds (or two images, VAE)."""
    from genvis_trust.generators import load_generator
    from genvis_trust.generators.interpolate import interpolate
    from genvis_trust.report.grid import save_grid

    with friendly_errors(*_errors()):
        g = load_generator(model, device)
        strips = []
        for r in range(rows):
            pair = (seeds[0] + 2 * r, seeds[1] + 2 * r)
            strips.extend(interpolate(g, seeds=pair, images=images if r == 0 else None, frames=frames,
                                      class_id=class_id))
        save_grid(out_png, strips, ncols=frames, cell=max(32, strips[0].shape[0]))
    err.print(f"wrote {out_png}")


@app.command("train-features")
def train_features_cmd(
    ctx: typer.Context,
    out_dir: Path | None = typer.Option(None, "--out", "-o", help="Folder (default: the bundled asset location)."),
    steps: int = typer.Option(1500, help="Optimizer steps."),
    seed: int = typer.Option(0, help="Seed."),
    device: str = typer.Option("auto", help="auto, cpu, cuda ..."),
    threads: int | None = typer.Option(None, help="CPU threads."),
):
    """Train the toolkit's own feature network (digits classes + photo-patch sources) used by `evaluate`."""
    from genvis_trust.generators import set_cpu_threads
    from genvis_trust.generators.features import FEATURES_ASSET, train_feature_net

    with friendly_errors(*_errors()):
        set_cpu_threads(threads)
        card = train_feature_net(out_dir or FEATURES_ASSET, steps=steps, seed=seed, device=device,
                                 command=command_line(ctx))
    err.print(f"digits test accuracy {card['metrics']['digits_test_accuracy']:.4f}; wrote {out_dir or FEATURES_ASSET}")
