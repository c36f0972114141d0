"""The `genvis-trust` command. One module per command group."""

from __future__ import annotations

import typer

from genvis_trust import __version__

from . import datasets, demo, detectors, generators, provenance, scan, serve, train

app = typer.Typer(
    name="genvis-trust",
    help=(
        "Content provenance and deepfake detection with built-in generators.\n\n"
        "Data goes to stdout (with --json), progress and diagnostics to stderr.\n"
        "Exit codes: 0 ok, 1 a problem was found in the data, 2 usage error."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)
app.command("scan")(scan.scan_cmd)
app.command("audit")(scan.audit_cmd)
app.command("serve")(serve.serve_cmd)
app.command("demo")(demo.demo_cmd)
app.add_typer(datasets.app, name="datasets")
app.add_typer(provenance.keys_app, name="keys")
app.add_typer(provenance.watermark_app, name="watermark")
app.command("stamp")(provenance.stamp)
app.command("verify")(provenance.verify)
app.add_typer(generators.app, name="generators")
app.add_typer(train.app, name="train")
app.command("generate")(generators.generate_cmd)
app.add_typer(detectors.app, name="detectors")
app.command("evaluate")(detectors.evaluate_cmd)
train.app.command("detector")(detectors.train_detector_cmd)


def _version(value: bool):
    if value:
        typer.echo(f"genvis-trust {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Show the version."),
):
    pass


if __name__ == "__main__":  # pragma: no cover
    app()
