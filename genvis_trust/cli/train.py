"""`genvis-trust train ...`: train models with the toolkit's own loops (generators now; detectors later)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import typer

from .common import command_line, err, friendly_errors, print_json, progress
from .detectors import train_detector_cmd

app = typer.Typer(help="Train generators and detectors with the toolkit's own loops.", no_args_is_help=True)


def parse_config(items: list[str]) -> dict:
    """KEY=VALUE pairs; VALUE is parsed as JSON when it parses (numbers, lists), else a string."""
    from genvis_trust.generators import GeneratorError

    cfg = {}
    for it in items:
        if "=" not in it:
            raise GeneratorError(f"--config expects KEY=VALUE, got {it!r}")
        k, v = it.split("=", 1)
        try:
            cfg[k.strip()] = json.loads(v)
        except json.JSONDecodeError:
            cfg[k.strip()] = v
    return cfg


@app.command("generator")
def train_generator_cmd(
    ctx: typer.Context,
    family: str = typer.Argument(..., help="Generator family: gan, vae, diffusion, flow, autoregressive."),
    data: str = typer.Option("builtin-photos", "--data", help="Source name (see `datasets list`) or folder."),
    out: Path = typer.Option(..., "--out", "-o", help="Artifact folder to write (config/model/card + train state)."),
    steps: int = typer.Option(1000, help="Total optimizer steps (including steps done before a resume)."),
    batch: int = typer.Option(64, help="Batch size."),
    lr: float | None = typer.Option(None, help="Learning rate (default: the family's)."),
    n: int | None = typer.Option(None, "--n", help="Training images/patches (default: all images, or 10000 patches of large photos)."),
    seed: int = typer.Option(0, help="Seed for init, data order, patches and noise."),
    conditional: bool = typer.Option(False, help="Condition on the source's class labels (e.g. builtin-digits)."),
    config: list[str] = typer.Option([], "--config", "-c", help="Model config KEY=VALUE (repeatable), e.g. -c width=32 -c 'mults=[1,2]'."),
    device: str = typer.Option("auto", help="auto (CUDA when present), cpu, cuda, cuda:1 ..."),
    threads: int | None = typer.Option(None, help="CPU threads (default: GENVIS_THREADS or min(4, cores))."),
    resume: bool = typer.Option(False, help="Continue the run in --out from its last checkpoint."),
    checkpoint_every: int = typer.Option(500, help="Write a checkpoint every this many steps."),
    time_budget: float | None = typer.Option(None, help="Stop (and checkpoint) after this many seconds."),
    json_out: bool = typer.Option(False, "--json", help="Print the final card as JSON to stdout."),
):
    """Train a generator FAMILY on a real source into an artifact folder.

    Example: genvis-trust train generator diffusion --data builtin-digits --conditional --steps 2000 --out runs/ddpm
    """
    from genvis_trust.datasets import SourceError
    from genvis_trust.generators import GeneratorError, set_cpu_threads, train_generator

    with friendly_errors(GeneratorError, SourceError):
        nthreads = set_cpu_threads(threads)
        cfg = parse_config(config)
        t0 = time.time()
        with progress() as bar:
            task = bar.add_task(f"train {family}", total=steps)
            last = {"t": 0.0}

            def on_step(step: int, losses: dict):
                bar.update(task, completed=step)
                if time.time() - last["t"] > 2:
                    desc = " ".join(f"{k}={v:.4g}" for k, v in losses.items())
                    bar.update(task, description=f"train {family} {desc}")
                    last["t"] = time.time()

            res = train_generator(
                family, out, data=data, steps=steps, batch=batch, lr=lr, device=device, seed=seed, n=n,
                conditional=conditional, config=cfg, resume=resume, checkpoint_every=checkpoint_every,
                time_budget_s=time_budget, command=command_line(ctx), on_step=on_step,
            )
    err.print(
        f"trained {family} to step {res.step} in {time.time() - t0:.0f}s ({nthreads} CPU threads); "
        f"checkpoint {res.checkpoint_sha256[:12]} in {out}"
    )
    if res.card.get("metrics"):
        err.print(f"metrics: {res.card['metrics']}")
    if json_out:
        print_json(res.card)


# `train detector` is written with the other detector commands
app.command("detector")(train_detector_cmd)
