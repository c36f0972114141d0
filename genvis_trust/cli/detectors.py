"""`genvis-trust detectors ...`, `genvis-trust evaluate` and `genvis-trust train detector`."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import typer
from rich.markup import escape
from rich.table import Table

from genvis_trust.artifacts import ArtifactError
from genvis_trust.datasets import SourceError, get_source
from genvis_trust.datasets.corpus import CorpusError
from genvis_trust.environment import TorchvisionMismatch

from .common import (
    EXIT_PROBLEM,
    EXIT_USAGE,
    check_path,
    command_line,
    err,
    fail,
    friendly_errors,
    out,
    phase,
    print_json,
    progress,
)

app = typer.Typer(help="Detector families, bundled and installed detectors, fetching published weights, checkpoint import, stacks, explanations.", no_args_is_help=True)

_ERRORS = (SourceError, CorpusError, ArtifactError, ValueError, FileNotFoundError, TorchvisionMismatch)


def data_source(spec: str, split: str | None, *, patch: int | None, n: int | None, seed: int, label: str | None = None):
    """A source restricted to one split (by source group). Built-in sources are cut into
    ``patch`` patches (``n`` of them); folders and corpora give whole images, which training
    crops and scoring tiles."""
    from genvis_trust.datasets import list_sources

    builtin = spec in list_sources()
    opts = dict(split=split, seed=seed, n=n if builtin else None)
    if patch is not None and builtin:
        opts["patch"] = patch
    if label is not None:
        opts["label"] = label
    return get_source(spec, **opts)


@app.command("list")
def list_cmd(json_out: bool = typer.Option(False, "--json", help="Print JSON to stdout.")):
    """Show detector families (installed or not, licence, fidelity measured against the reference
    code, accuracy as the publisher claims it) and the bundled and installed detectors."""
    from genvis_trust.detectors import list_bundled
    from genvis_trust.detectors.catalogue import family_catalogue
    from genvis_trust.detectors.installed import detectors_home, list_installed

    with friendly_errors(*_ERRORS):
        rows = family_catalogue()
    bundled, installed = {}, {}
    for dest, items in ((bundled, list_bundled()), (installed, list_installed())):
        for name, path in items.items():
            try:
                card = json.loads((path / "card.json").read_text())
                family = json.loads((path / "config.json").read_text()).get("family")
            except (OSError, ValueError) as e:
                dest[name] = {"path": str(path), "error": f"unreadable artifact ({e})"}
                continue
            dest[name] = {"path": str(path), "family": family, "summary": card.get("summary", ""),
                          "licence": card.get("licence", "the toolkit's"), "source": card.get("source")}
    if json_out:
        print_json({"families": {r["family"]: r for r in rows}, "bundled": bundled, "installed": installed,
                    "installed_home": str(detectors_home())})
        return
    t = Table(title="detector families (accuracy: the publisher's claim, not measured here; fidelity: measured against the reference code)")
    for c in ("family", "origin", "input", "installed", "licence", "fidelity", "accuracy (publisher's claim)"):
        t.add_column(c)
    for r in rows:
        inst = ", ".join(r["installed"] + [f"{b} (bundled)" for b in r["bundled"]]) or "no"
        if r["origin"] == "published":
            lic = f"{r['licence']} ({'commercial use allowed' if r['commercial_use'] else 'non-commercial'})"
            acc = r["claimed_accuracy"]["claim"]
        else:
            lic, acc = "the toolkit's (Apache-2.0)", "- (the toolkit's own: see its card's measured results)"
        t.add_row(r["family"], "published" if r["origin"] == "published" else "toolkit's own", r["input"], escape(inst),
                  escape(lic), escape(r["fidelity"]["text"]), escape(acc))
    out.print(t)
    t2 = Table(title="bundled detectors (use by name: --detector NAME)")
    for c in ("name", "family", "summary"):
        t2.add_column(c)
    for n, b in bundled.items():
        t2.add_row(n, b.get("family") or "?", escape(b.get("summary") or b.get("error", "")))
    out.print(t2)
    t3 = Table(title=f"installed detectors in {detectors_home()} (use by name: --detector NAME)")
    for c in ("name", "family", "licence", "source sha256"):
        t3.add_column(c)
    for n, b in installed.items():
        src = b.get("source") or {}
        t3.add_row(n, b.get("family") or "?", escape(str(b.get("licence") or b.get("error", ""))), str(src.get("sha256") or "-"))
    if installed:
        out.print(t3)
    else:
        err.print(f"no installed detectors in {detectors_home()} (genvis-trust detectors fetch NAME)")


@app.command("fetch")
def fetch_cmd(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="A published family (see `detectors list`)."),
    variant: str | None = typer.Option(None, help="Which of the family's published weights (default: the first its card lists)."),
    from_file: Path | None = typer.Option(None, "--from", help="Install from this file instead of downloading (no network)."),
    accept_licence: bool = typer.Option(False, "--accept-licence", help="Accept a non-commercial licence (shown without this flag)."),
    out_dir: Path | None = typer.Option(None, "--out", "-o", help="Artifact folder to write (default: the installed-detectors folder, "
                                        "$GENVIS_TRUST_HOME/detectors/NAME)."),
    timeout: float | None = typer.Option(None, help="Seconds without data before giving up on a stalled server "
                                         "(default: $GENVIS_TRUST_FETCH_TIMEOUT or 60)."),
    json_out: bool = typer.Option(False, "--json", help="Print what was installed as JSON to stdout."),
):
    """Download a published detector's weights from where its publisher put them, check them,
    and install them as a toolkit artifact usable as `scan --detector NAME`.

    The download resumes when rerun. The file's size and sha256 are checked against the
    family's card when it records them, and printed. Only a file that loads with
    weights_only=True (tensors and plain containers; no pickled code) is installed. Weights
    under a non-commercial licence need --accept-licence. Exit codes: 0 installed, 1 the
    download or the file failed a check (nothing installed), 2 usage (unknown name, licence
    not accepted).

    Example: genvis-trust detectors fetch npr --from NPR.pth"""
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    from genvis_trust.detectors.fetch import FetchError, LicenceNotAccepted, fetch_detector

    bar = Progress(TextColumn("[progress.description]{task.description}"), BarColumn(), DownloadColumn(),
                   TransferSpeedColumn(), TimeRemainingColumn(), console=err, transient=False)
    task = None

    def on_progress(done: int, total: int | None) -> None:
        nonlocal task
        if task is None:
            bar.start()
            task = bar.add_task(f"fetching {name}", total=total, completed=done)
        bar.update(task, completed=done, total=total)

    try:
        try:
            res = fetch_detector(name, variant=variant, from_file=from_file, accept_licence=accept_licence, out=out_dir,
                                 timeout=timeout, progress=on_progress, command=command_line(ctx),
                                 on_licence=lambda text: err.print(escape(text), highlight=False))
        finally:
            if task is not None:
                bar.stop()
    except LicenceNotAccepted as e:
        err.print(escape(str(e)), highlight=False)
        fail(f"{name}: licence not accepted; nothing downloaded", EXIT_USAGE)
    except FetchError as e:
        fail(str(e), EXIT_PROBLEM)
    except (ValueError, ArtifactError, FileExistsError) as e:
        fail(str(e), EXIT_USAGE)
    if json_out:
        print_json(res.to_dict())
    if res.resumed_from:
        err.print(f"resumed from byte {res.resumed_from}", highlight=False)
    err.print(f"installed {res.name} ({res.family}, {res.variant}) in {res.path}", highlight=False)
    err.print(f"sha256 {res.sha256}  size {res.size} bytes  licence {res.licence}", highlight=False)
    err.print(f"use it with: genvis-trust scan --detector {res.name if out_dir is None else res.path} FILES", highlight=False)


@app.command("stack")
def stack_cmd(
    ctx: typer.Context,
    member: list[str] = typer.Option(..., "--member", "-m", help="A member detector: bundled or installed name, or folder; repeat. "
                                     "A stack (e.g. default) brings its own members."),
    real: list[Path] = typer.Option(..., "--real", help="Folder of validation photographs (class 0; each also re-shipped); repeat."),
    generated: list[Path] = typer.Option(..., "--generated", help="Folder of generated samples (class 1), one generator each; "
                                         "repeat. With two or more, each is held out in turn to measure what a negative is worth."),
    name: str = typer.Option("stack-custom", help="Installed name (use it as --detector NAME)."),
    out_dir: Path | None = typer.Option(None, "--out", "-o", help="Write the artifact here instead of the installed-detectors folder."),
    fpr: float = typer.Option(0.05, help="False-positive budget on the photographs, every re-shipped form included."),
    free_voided: bool = typer.Option(False, "--free-voided", help="Photographs outside the domain do not constrain the threshold."),
    upscaled_head: bool = typer.Option(False, "--upscaled-head", help="Also fit a head for inputs the domain voids only as up-scaled "
                                       "(as the bundled default has; the domain member must declare min_hf_share)."),
    domain_from: str | None = typer.Option(None, help="The member whose domain the stack declares (default: the first)."),
    max_images: int | None = typer.Option(None, help="At most this many images from each folder."),
    json_out: bool = typer.Option(False, "--json", help="Print the fit (weights, threshold, counts, in-sample rates) as JSON."),
):
    """Refit a calibrated stack over any members on your own validation photographs and
    generated samples, with the false-positive budget and re-shipped forms of the bundled
    default's fit (scripts/stack_realworld.py).

    Each photograph counts as stored and re-shipped (JPEG 90 and 40, long side 512, up-scaled 2x,
    60% crop, 16:9 letterbox, PNG re-save); each generated sample as stored, JPEG 90 and long
    side 512. The threshold keeps --fpr false positives on the photographs; p = 0.5 there. The
    card lists every member (name, sha256, licence) and what the stack was fitted on. Keep the
    images you evaluate on out of these folders. When a member reads whole images (a published
    family), the result is an image-level fusion: each member scores the image its own way and
    the fusion combines their logits; it refers to its members by name or folder (they must stay
    installed) and its licence is the strictest of theirs.

    Example: genvis-trust detectors stack --member default --member npr --real val/photos --generated val/generated"""
    from genvis_trust.detectors.installed import check_replaceable, install_folder, installed_dir
    from genvis_trust.detectors.stacking import refit_stack

    bar = progress()
    tasks: dict[str, int] = {}

    def on_progress(kind: str, n: int) -> None:
        if kind not in tasks:
            if not tasks:
                bar.start()
            tasks[kind] = bar.add_task(f"scoring {kind} images (every form)", total=None)
        bar.update(tasks[kind], completed=n)

    with friendly_errors(*_ERRORS, FileExistsError):
        target = check_replaceable(out_dir if out_dir is not None else installed_dir(name))
        try:
            fit = refit_stack(member, [str(p) for p in real], [str(p) for p in generated], fpr=fpr, free_voided=free_voided,
                              upscaled_head=upscaled_head, domain_from=domain_from, max_images=max_images, progress=on_progress)
        finally:
            if tasks:
                bar.stop()
        for s in fit.skipped:
            err.print(f"[yellow]skipped[/] {escape(s)}", highlight=False)
        members = {m.name: m.describe() for m in fit.members}
        non_commercial = [n for n, m in members.items() if m["commercial_use"] is False]
        unknown = [n for n, m in members.items() if m["commercial_use"] is None]
        fused = fit.detector.family == "fusion"  # a member reads whole images: each member scored its own way
        level = ("image (each member scores the image its own way: a tile member the mean of its tile logits, a whole-image "
                 "member its publication's preprocessing; one logit each, combined)" if fused else
                 "image (one logit per member per image: the mean of its tile logits; the stack's per-tile combination "
                 "averages to the same)")
        card = {
            "name": name if out_dir is None else out_dir.name,
            "summary": f"{'fusion' if fused else 'stack'} of {', '.join(members)} refitted on the user's images "
                       f"(threshold at {fpr:.0%} false positives on their photographs)",
            "domain": fit.detector.card.get("domain"),
            "members": members,
            "licence": "; ".join([*(["non-commercial: " + ", ".join(non_commercial)] if non_commercial else []),
                                  *(["unknown: " + ", ".join(unknown)] if unknown else [])]) or "every member allows commercial use",
            "commercial_use": False if non_commercial else (None if unknown else True),
            "stacking": {
                "level": level,
                "members": list(members), "weights": fit.weights, "bias": fit.bias,
                "threshold_logit": fit.threshold_logit, "fpr_budget": fpr, "free_voided": free_voided,
                "fitted_on": fit.counts, "skipped_files": fit.skipped,
                "heads": fit.head,
            },
            "in_sample": fit.in_sample,
            **({"sensitivity": fit.sensitivity} if fit.sensitivity else {}),
            "reserved_sources_used": "not checked: the user's folders",
            "command": command_line(ctx),
        }
        sha = install_folder(target, lambda tmp: fit.detector.save(tmp, card=card))
    rep = {"path": str(target), "weights_sha256": sha, "sensitivity": fit.sensitivity,
           **{k: card[k] for k in ("members", "stacking", "in_sample", "licence")}}
    if json_out:
        print_json(rep)
    else:
        t = Table(title=f"{'fusion' if fused else 'stack'} {card['name']}: weights per member (threshold logit {fit.threshold_logit:.3f})")
        for c in ("member", "family", "weight", "licence"):
            t.add_column(c)
        for (n, m), w in zip(members.items(), fit.weights, strict=True):
            t.add_row(escape(n), m["family"], f"{w:.4f}", escape(m["licence"]))
        out.print(t)
        ins = fit.in_sample
        err.print("in-sample (the images it was fitted on, not held out): FPR " + ", ".join(f"{k} {v:.3f}" for k, v in ins["real_fpr"].items())
                  + "; TPR " + ", ".join(f"{k} {v:.3f}" for k, v in ins["generated_tpr"].items()), highlight=False)
        if fit.sensitivity:
            sv = fit.sensitivity
            err.print(f"held out (each of {sv['generators']} generated folders in turn, half the photographs): flagged "
                      + ", ".join(f"{e} {sv[e]['tpr_pooled']:.3f}" for e in ("orig", "jpeg90", "resize512"))
                      + " of the held-out samples, " + ", ".join(f"{e} {sv[e]['real_fpr']:.3f}" for e in ("orig", "jpeg90", "resize512"))
                      + " of the held-out photographs", highlight=False)
    err.print(f"wrote {target} (weights sha256 {sha[:16]}…); use it with --detector {card['name'] if out_dir is None else target}",
              highlight=False)


@app.command("import")
def import_cmd(
    checkpoint: Path = typer.Argument(..., help="A published checkpoint (.pth/.pt state dict or .safetensors)."),
    arch: str = typer.Option(..., help="A family that reads published checkpoints, e.g. cnndetection (CNNDetection), npr (NPR), safe (SAFE); resnet50 is cnndetection's old name."),
    out_dir: Path = typer.Option(..., "--out", "-o", help="Artifact folder to write."),
    patch: int | None = typer.Option(None, help="Input side for tiling (default 224)."),
):
    """Convert a published checkpoint into a toolkit artifact. Loaded with weights_only=True: no
    arbitrary unpickling. The result is uncalibrated until you evaluate/calibrate it on your data."""
    from genvis_trust.detectors.importing import CheckpointImportError, import_checkpoint

    check_path(checkpoint, "file", "checkpoint")
    with friendly_errors(CheckpointImportError, *_ERRORS):
        det = import_checkpoint(checkpoint, arch, patch=patch)
        if det.family != arch:
            err.print(f"[yellow]{arch} is the old name of {det.family}: imported as {det.family}[/]")
        sha = det.save(out_dir, card={"name": out_dir.name, "summary": f"imported {det.family} checkpoint (uncalibrated)"})
    how = "whole images, the publication's preprocessing" if det.whole_image else f"{det.patch}px tiles"
    err.print(f"wrote {det.family} detector to {out_dir} ({how}; weights sha256 {sha[:16]}…)")


@app.command("explain")
def explain_cmd(
    image: Path = typer.Argument(..., help="Image to explain."),
    out_png: Path = typer.Option(..., "--out", "-o", help="PNG to write: the image with the evidence map over it."),
    detector: str = typer.Option("default", help="Detector: a bundled or installed name, or an artifact folder."),
    method: str = typer.Option("auto", help="tiles (patch-score map), gradcam, or auto (gradcam for one-tile images)."),
    device: str = typer.Option("auto", help="auto, cpu or cuda."),
):
    """Write a heat map of where the detector's evidence comes from."""
    from genvis_trust.atomic import atomic_write_bytes
    from genvis_trust.detectors import load_detector
    from genvis_trust.detectors.explain import gradcam, overlay, patch_score_map
    from genvis_trust.io import ImageLoadError, encode_image, load_image
    from genvis_trust.report.grid import image_grid
    from genvis_trust.report.html import with_colour_bar

    check_path(image, "file", "image")
    with friendly_errors(ImageLoadError, *_ERRORS):
        det = load_detector(detector, device=device)
        img = load_image(image).array
        single = img.shape[0] <= det.patch * 1.5 and img.shape[1] <= det.patch * 1.5
        use_cam = method == "gradcam" or (method == "auto" and single)
        if use_cam:
            from genvis_trust.detectors.training import fixed_patches

            patch = fixed_patches([img], det.patch)[0]
            heat = overlay(patch, gradcam(det, patch))
            base = patch
        else:
            heat = overlay(img, patch_score_map(det, img))
            base = img
        scale = max(1, 256 // max(base.shape[:2]))
        grid = image_grid([base, heat], ncols=2, cell=max(base.shape[:2]) * scale if scale > 1 else None)
        bar = ("Grad-CAM, relative", "0", "max") if use_cam else ("tile p(generated)", "0", "1")
        atomic_write_bytes(out_png, encode_image(with_colour_bar(grid, *bar), "PNG"))
    p = det.score(img).probability
    err.print(f"{'Grad-CAM' if use_cam else 'patch-score map'} written to {out_png}; p(generated) = {p:.3f}")


@app.command("regions")
def regions_cmd(
    image: Path = typer.Argument(..., help="Image to map."),
    out_png: Path = typer.Option(..., "--out", "-o", help="PNG to write: the image, its region map and (with --mask) the mask, side by side."),
    mask: Path | None = typer.Option(None, help="Mask image (white = regenerated), e.g. a corpus record's masks/NNN/NNNNNN.png, drawn beside the map."),
    detector: str = typer.Option("default", help="Detector: a bundled or installed name, or an artifact folder."),
    stride: int | None = typer.Option(None, help="Pixels between tiles (default: half the detector's tile)."),
    device: str = typer.Option("auto", help="auto, cpu or cuda."),
    json_out: bool = typer.Option(False, "--json", help="Print the strongest tile and (with --mask) the localisation metrics as JSON."),
):
    """Write the detector's region map: overlapping tiles placed on the image, each pixel the
    calibrated p(generated) of the tiles covering it; with --mask, the mask beside it and pixel
    AUC, F1 and IoU (at p >= 0.5) on stderr."""
    from genvis_trust.atomic import atomic_write_bytes
    from genvis_trust.detectors import load_detector
    from genvis_trust.detectors.explain import overlay
    from genvis_trust.io import ImageLoadError, encode_image, load_image
    from genvis_trust.regions import localisation_metrics, region_map
    from genvis_trust.report.grid import image_grid

    check_path(image, "file", "image")
    if mask is not None:
        check_path(mask, "file", "mask (--mask)")
    from genvis_trust.report.html import thumbnail, with_colour_bar

    with friendly_errors(ImageLoadError, *_ERRORS):
        det = load_detector(detector, device=device)
        img = load_image(image).array
        m = None
        if mask is not None:
            m = load_image(mask).array[..., 0] > 127
            if m.shape != img.shape[:2]:
                raise ValueError(f"{mask}: mask is {m.shape[1]}x{m.shape[0]}, the image {img.shape[1]}x{img.shape[0]}")
        rm = region_map(det, img, stride=stride)
        z = rm.pixel_logits()
        pix = det.probabilities(np.nan_to_num(z, nan=-1e3).ravel()).reshape(z.shape)
        # the map's own range, labelled: on a real photograph every tile may sit below 0.5
        lo, hi = float(np.nanmin(pix)), float(np.nanmax(pix))
        panels = [img, overlay(img, pix, vmin=lo, vmax=max(hi, lo + 1e-3))]
        if m is not None:
            panels.append(np.repeat((m * 255).astype(np.uint8)[..., None], 3, axis=2))
        grid = image_grid([thumbnail(x, 384) for x in panels], ncols=len(panels))
        atomic_write_bytes(out_png, encode_image(with_colour_bar(grid, "region map: tile p(generated)", f"{lo:.2f}", f"{hi:.2f}"), "PNG"))
    k = int(np.argmax(rm.logits))
    y, x = rm.positions[k]
    rep = {"image": str(image), "tiles": len(rm.logits), "stride": rm.stride, "notes": rm.notes,
           "strongest_tile": {"box": [x, y, rm.patch, rm.patch], "probability": float(det.probabilities(rm.logits[k : k + 1])[0])},
           "image_probability": float(det.probabilities(np.array([float(np.mean(rm.logits))]))[0])}
    if m is not None:
        rep["localisation"] = localisation_metrics(pix, m)
    if json_out:
        print_json(rep)
    err.print(f"region map ({len(rm.logits)} tiles, stride {rm.stride}px) written to {out_png}")
    if m is not None:
        lm = rep["localisation"]
        auc = "-" if lm["auc"] is None else f"{lm['auc']:.3f}"
        err.print(f"against the mask: pixel AUC {auc}, F1 {lm['f1']:.3f}, IoU {lm['iou']:.3f} (p >= 0.5)")


def train_detector_cmd(
    family: str = typer.Argument("cnn", help="Detector family (see `detectors list`)."),
    real: list[str] = typer.Option(["builtin-photos"], help="Real source(s): built-in name or folder; repeat for several."),
    fake: list[str] = typer.Option(..., help="Generated corpus folder(s); repeat the option for several."),
    out_dir: Path = typer.Option(..., "--out", "-o", help="Artifact folder to write."),
    patch: int | None = typer.Option(None, help="Input side (default: the family's, 32 for most)."),
    real_n: int = typer.Option(6000, help="Real training patches (validation gets a quarter)."),
    steps: int = typer.Option(2000, help="Optimizer steps (early stopping may end sooner)."),
    batch: int = typer.Option(64, help="Batch size (half real, half generated)."),
    lr: float = typer.Option(1e-3, help="Peak learning rate (one-cycle)."),
    blur_p: float = typer.Option(0.1, help="Probability of Gaussian blur augmentation."),
    jpeg_p: float = typer.Option(0.1, help="Probability of JPEG augmentation."),
    reencode: str | None = typer.Option(None, help="Perturbation applied to every image of both classes, e.g. jpeg:quality=95."),
    calibration: str = typer.Option("platt", help="platt, temperature, isotonic or none (fitted on the val split)."),
    seed: int = typer.Option(0, help="Seed for splits, sampling and initialisation."),
    device: str = typer.Option("auto", help="auto, cpu or cuda."),
):
    """Train a detector on real vs generated images; writes config.json + model.safetensors + card.json.

    Example: genvis-trust train detector cnn --fake out/gen-gan --fake out/gen-vae --out out/det
    """
    from genvis_trust.detectors.training import TrainConfig, train_detector
    from genvis_trust.devices import use_all_cores

    use_all_cores()
    cfg = TrainConfig(
        steps=steps, batch=batch, lr=lr, blur_p=blur_p, jpeg_p=jpeg_p, reencode=reencode,
        calibration=calibration, seed=seed,
    )
    with friendly_errors(*_ERRORS):
        from genvis_trust.detectors.registry import get_family

        p = patch or get_family(family).patch
        per = max(1, real_n // len(real))
        tr_real = [data_source(r, "train", patch=p, n=per, seed=seed) for r in real]
        va_real = [data_source(r, "val", patch=p, n=max(1, per // 4), seed=seed) for r in real]
        tr_fake = [data_source(f, "train", patch=None, n=None, seed=seed) for f in fake]
        va_fake = [data_source(f, "val", patch=None, n=None, seed=seed) for f in fake]
        with progress() as bar:
            task = bar.add_task(f"train {family}", total=steps)
            res = train_detector(
                family, tr_real, tr_fake, real_val=va_real, fake_val=va_fake, patch=p, config=cfg,
                device=device, log=lambda m: err.print(m, highlight=False),
                progress=lambda i, n: bar.update(task, completed=i, total=n),
            )
        card = {
            "name": out_dir.name,
            "summary": f"{family} trained on {', '.join(real)} vs {', '.join(Path(f).name for f in fake)}",
            "data": {"real": [s.spec() for s in tr_real], "generated": [s.spec() for s in tr_fake]},
            "command": command_line(),
            "wall_time_s": round(res.wall_time_s, 1),
        }
        sha = res.detector.save(out_dir, card=card)
    m = res.metrics
    err.print(
        f"val AUC {m['val_auc']:.4f}; ECE {m['val_ece_uncalibrated']:.3f} -> {m['val_ece_calibrated_on_val']:.3f} "
        f"after {cfg.calibration} calibration (on the val split it was fitted on; use `evaluate` for test numbers)"
    )
    err.print(f"wrote {out_dir} in {res.wall_time_s:.0f}s (weights sha256 {sha[:16]}…)")


def evaluate_cmd(
    detector: str = typer.Argument("default", help="Detector: a bundled or installed name (`detectors list`; install with `detectors fetch NAME`) or an artifact folder."),
    real: list[str] = typer.Option(["builtin-photos"], help="Real source(s): built-in name or folder; repeat for several."),
    fake: list[str] = typer.Option(..., help="Generated corpus folder(s); repeat for several."),
    split: str = typer.Option("test", help="Split to evaluate on (by source group): test, val, train or all."),
    real_n: int = typer.Option(1000, help="Real test patches (for patch sources)."),
    seed: int = typer.Option(0, help="The seed the detector was trained with keeps splits aligned."),
    robust: bool = typer.Option(False, "--robustness", help="Also sweep the standard perturbations (JPEG, resize, crop, blur, ...)."),
    out_dir: Path | None = typer.Option(None, "--out", "-o", help="Write report.json and plots (ROC, reliability, robustness) here."),
    json_out: bool = typer.Option(False, "--json", help="Print the report as JSON to stdout."),
    device: str = typer.Option("auto", help="auto, cpu or cuda."),
):
    """Evaluate a detector on held-out real and generated images.

    Reports acc (real/fake), AP, AUC, EER, TPR@1%FPR and ECE, per generator; --robustness adds
    the perturbation sweeps; --out writes report.json and plots. A generated corpus whose
    records carry masks (inpainting, splices) also gets localisation metrics: pixel AUC of the
    detector's region map against the masks, F1 and IoU at the calibrated threshold."""
    from genvis_trust.datasets.perturbations import STANDARD_ROBUSTNESS_SUITE
    from genvis_trust.detectors import load_detector
    from genvis_trust.detectors.evaluation import EvalSet, evaluate, robustness
    from genvis_trust.detectors.metrics import reliability

    sp = None if split == "all" else split
    with friendly_errors(*_ERRORS):
        det = load_detector(detector, device=device)
        with phase("loading the evaluation images"):
            real_src = [data_source(r, sp, patch=det.patch, n=max(1, real_n // len(real)), seed=seed) for r in real]
            fake_src = [data_source(f, sp, patch=None, n=None, seed=seed) for f in fake]
            data = EvalSet.from_sources(real_src, fake_src)
        counts = _report_counts(real, real_src, fake, fake_src, data, split, seed, det.patch)
        t0 = time.time()
        with phase(f"scoring {len(data.labels)} images"):
            rep = evaluate(det, data)
        probs = rep.pop("probabilities")
        rep["detector"] = {"name": det.name, "family": det.family, "sha256": det.sha256, "calibration": det.calibration["method"]}
        rep["data"] = {"real": real, "generated": fake, "split": split, "counts": counts}
        if robust:
            with phase(f"robustness: {len(STANDARD_ROBUSTNESS_SUITE)} perturbations x {len(data.labels)} images"):
                rep["robustness"] = robustness(det, data, STANDARD_ROBUSTNESS_SUITE, seed=seed)
        loc = _localisation(det, fake, fake_src)
        if loc:
            rep["localisation"] = loc
        rep["wall_time_s"] = round(time.time() - t0, 2)
    if out_dir is not None:
        from genvis_trust.atomic import atomic_write_text
        from genvis_trust.report import plots

        out_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out_dir / "report.json", json.dumps(rep, indent=2, sort_keys=True, default=str) + "\n")
        fams = np.array(data.families)
        curves = {"all": (data.labels, probs)}
        for fam in rep["per_generator"]:
            m = (data.labels == 0) | (fams == fam)
            curves[fam] = (data.labels[m], probs[m])
        with phase("plots"):
            plots.roc_curves(out_dir / "roc.png", curves, title=f"ROC: {det.name}")
            plots.reliability_diagram(out_dir / "reliability.png", reliability(data.labels, probs), title=f"Reliability: {det.name}")
            if robust:
                plots.robustness_curves(out_dir / "robustness.png", rep["robustness"], "auc", title=f"AUC under perturbations: {det.name}")
        err.print(f"report and plots in {out_dir}")
    if json_out:
        print_json(rep)
        return
    t = Table(title=f"{det.name} on {split} split")
    cols = ("set", "n", "acc", "real acc", "fake acc", "AUC", "AP", "EER", "TPR@1%FPR", "ECE")
    for c in cols:
        t.add_column(c)

    def row(name, r):
        t.add_row(name, str(r["n"]), *(f"{r[k]:.3f}" for k in ("acc", "real_acc", "fake_acc", "auc", "ap", "eer", "tpr_at_0.01_fpr", "ece")))

    row("all", rep["overall"])
    for fam, r in rep["per_generator"].items():
        row(f"real vs {fam}", r)
    if robust:
        for name, r in rep["robustness"].items():
            row(escape(f"[{name}]"), r)
    out.print(t)
    if loc:
        _print_localisation(loc, det.name)


def _localisation(det, specs, sources) -> dict:
    """Localisation metrics for every generated corpus whose records carry masks."""
    from genvis_trust.regions import evaluate_localisation, has_masks, masked_items

    loc = {}
    for spec, src in zip(specs, sources, strict=True):
        if has_masks(src):
            with phase(f"localisation: region maps of {spec} against its masks"):
                loc[spec] = evaluate_localisation(det, list(masked_items(src)))
    return loc


def _print_localisation(loc: dict, name: str) -> None:
    t = Table(title=f"{name}: localisation against masks (region map: tiles every half tile; F1 and IoU at p >= 0.5)")
    for c in ("corpus", "images", "pixel AUC", "pixel AUC per image", "F1", "IoU", "region rule fires", "fires on the mask"):
        t.add_column(c)

    def f(v):
        return "-" if v is None else f"{v:.3f}"

    for spec, r in loc.items():
        s = r["summary"]
        t.add_row(escape(spec), str(s["images"]), f(s["pixel_auc_pooled"]), f(s["pixel_auc_mean"]), f(s["f1_mean"]),
                  f(s["iou_mean"]), f(s["rule_fires"]), f(s["rule_hits"]))
    out.print(t)


def _report_counts(real, real_src, fake, fake_src, data, split, seed, patch) -> dict:
    """Say on stderr how many images of each class `evaluate` scores, from where, and why
    not all of them (the split, --real-n, the per-source cap); returns the same as a dict."""
    from genvis_trust.datasets import list_sources

    used = {"real": int((data.labels == 0).sum()), "generated": int((data.labels == 1).sum())}
    lines, per_source = [], {}
    for cls, specs, sources in (("real", real, real_src), ("generated", fake, fake_src)):
        parts = []
        for spec, src in zip(specs, sources, strict=True):
            n = len(src)
            if spec in list_sources():
                parts.append(f"{spec}: {n} {patch}x{patch} patches of its {split} split (--real-n sets how many)")
            elif split == "all":
                parts.append(f"{spec}: all {n} images")
            else:
                total = len(data_source(spec, None, patch=None, n=None, seed=seed))
                parts.append(f"{spec}: {n} of its {total} images, the {split} split by source group "
                             f"(--split all scores all {total}, including any the detector was trained on)")
            per_source[spec] = n
        lines.append(f"{cls}: {used[cls]} images; " + "; ".join(parts))
    if sum(per_source.values()) > len(data.labels):
        lines.append(f"(at most {len(data.labels)} images are held in memory: each source was cut evenly to fit)")
    for line in lines:
        err.print(escape(line), highlight=False)
    return {"used": used, "per_source": per_source}


__all__ = ["app", "evaluate_cmd", "train_detector_cmd"]
