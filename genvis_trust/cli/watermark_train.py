"""``genvis-trust watermark train``: train the learned watermark (``learnedWm``).

Registered on the ``watermark`` group of :mod:`.provenance`; the training code is imported
only when the command runs.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import typer

from .common import EXIT_USAGE, err, fail, print_json


def train_cmd(
    out_dir: Path = typer.Option(..., "--out", help="Artifact folder to write (config.json, model.safetensors, card.json, checkpoint/)."),
    data: str = typer.Option("photos-native", "--data", help="Dataset source of photographs; only its train split is used."),
    split: str = typer.Option("train", help="Split to train on (keep val/test for evaluation)."),
    max_side: int = typer.Option(512, help="Photographs are shrunk to at most this side before cropping."),
    n_photos: int = typer.Option(None, "--n-photos", help="Use at most this many photographs (default: all)."),
    steps: int = typer.Option(3000, help="Optimisation steps (the schedule and curriculum follow this)."),
    batch: int = typer.Option(16, help="Batch size."),
    lr: float = typer.Option(1e-3, help="Adam learning rate (cosine decay over the second half)."),
    work: int = typer.Option(64, help="Working size of encoder and decoder (multiple of 8)."),
    channels: int = typer.Option(24, help="Conv channels."),
    train_size: int = typer.Option(128, help="Side the attacks act at (a multiple of --work)."),
    psnr: float = typer.Option(39.0, help="Target PSNR of the residual at strength 1 (sets target_rms)."),
    curriculum: float = typer.Option(0.4, help="Fraction of the steps over which attacks grow to full strength."),
    seed: int = typer.Option(0),
    device: str = typer.Option("auto", help="auto (CUDA when present), cpu or cuda."),
    resume: bool = typer.Option(False, "--resume", help="Continue from OUT/checkpoint with the same recipe."),
    checkpoint_minutes: float = typer.Option(3.0, help="Minutes between checkpoints."),
    max_minutes: float = typer.Option(None, "--max-minutes", help="Stop this run after so many minutes (resume later)."),
    as_json: bool = typer.Option(False, "--json", help="Print the card as JSON."),
):
    """Train the learned watermark on photographs with differentiable attack stand-ins.

    Example: genvis-trust watermark train --data photos-native --out wm-model --steps 3000
    """
    from genvis_trust.devices import use_all_cores
    from genvis_trust.provenance.learned_wm_train import load_training_photos, train

    if split != "train":
        err.print(f"[yellow]warning:[/] training on the {split!r} split", highlight=False)
    use_all_cores()
    try:
        photos, info = load_training_photos(data, split=split, max_side=max_side, n=n_photos)
    except Exception as e:  # unknown source, corpus not built
        fail(f"{data}: {e}", EXIT_USAGE)
    cfg = {"work": work, "channels": channels, "target_rms": round(10 ** (-psnr / 20), 6)}
    try:
        card = train(out_dir, photos, data_info=info, config=cfg, steps=steps, batch=batch, lr=lr,
                     train_size=train_size, curriculum=curriculum, seed=seed, device=device, resume=resume,
                     checkpoint_minutes=checkpoint_minutes, max_minutes=max_minutes,
                     command="genvis-trust " + " ".join(shlex.quote(a) for a in sys.argv[1:]))
    except (ValueError, FileNotFoundError) as e:
        fail(str(e), EXIT_USAGE)
    if as_json:
        print_json(card)
    else:
        err.print(f"wrote {out_dir} ({card['steps_done']} steps, {card['wall_s'] / 60:.1f} min)", highlight=False)
