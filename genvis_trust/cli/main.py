"""The `genvis-trust` command. One module per command group.

The groups are imported when their command runs (or when ``--help`` lists them), not at
start: a one-image ``scan`` would otherwise pay for every other group's imports (the
datasets package, training code) before it reads a byte. Each command is built from its
module exactly as ``app.command(name)`` / ``app.add_typer(..., name=...)`` builds it, so every
``--help`` reads the same as with the groups imported up front.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Iterator, MutableMapping

import typer
from typer.core import TyperGroup

from genvis_trust import __version__

# name -> (module in genvis_trust.cli, attribute, "command" | "group"), in the order `--help` lists
# them (typer's order: commands, then groups)
COMMANDS: dict[str, tuple[str, str, str]] = {
    "scan": ("scan", "scan_cmd", "command"),
    "audit": ("scan", "audit_cmd", "command"),
    "serve": ("serve", "serve_cmd", "command"),
    "demo": ("demo", "demo_cmd", "command"),
    "stamp": ("provenance", "stamp", "command"),
    "verify": ("provenance", "verify", "command"),
    "generate": ("generators", "generate_cmd", "command"),
    "evaluate": ("detectors", "evaluate_cmd", "command"),
    "doctor": ("doctor", "doctor_cmd", "command"),
    "datasets": ("datasets", "app", "group"),
    "keys": ("provenance", "keys_app", "group"),
    "watermark": ("provenance", "watermark_app", "group"),
    "generators": ("generators", "app", "group"),
    "train": ("train", "app", "group"),
    "detectors": ("detectors", "app", "group"),
}


def _build(name: str) -> typer.main._click.Command:
    """The click command for ``name``, made by typer from its module as the root would make it."""
    module, attr, kind = COMMANDS[name]
    target = getattr(importlib.import_module(f"{__package__}.{module}"), attr)
    holder = typer.Typer(add_completion=False)
    holder.callback()(lambda: None)  # a group, so typer builds its commands as sub-commands
    if kind == "group":
        holder.add_typer(target, name=name)
    else:
        holder.command(name)(target)
    return _one_line_listings(typer.main.get_group(holder).commands[name])


# a paragraph with a line starting so is a list or an example, kept line by line
_AS_WRITTEN = ("- ", "* ", "genvis-trust ", "Example", "Clips:")


def _reflowed(text: str) -> str:
    """``text`` with each prose paragraph on one line: in rich markup mode typer keeps a
    docstring's line breaks, which cut the text at odd places at any terminal width. Lists,
    indented blocks, example commands and ``\\b`` paragraphs keep their lines."""
    out = []
    for para in inspect.cleandoc(text).split("\n\n"):
        lines = para.split("\n")
        keep = para.startswith("\b") or any(ln[:1].isspace() or ln.lstrip().startswith(_AS_WRITTEN) for ln in lines)
        out.append(para if keep else " ".join(ln.strip() for ln in lines))
    return "\n\n".join(out)


def _one_line_listings(cmd):
    """Reflow ``cmd``'s help (and a group's sub-commands') so listings and pages wrap at the
    terminal's width, not the docstring's; the listing shows the first paragraph."""
    if cmd.help:
        cmd.help = _reflowed(cmd.help)
        if not cmd.short_help and not cmd.help.startswith("\b"):
            cmd.short_help = cmd.help.split("\n\n")[0]
    for sub in (getattr(cmd, "commands", None) or {}).values():
        _one_line_listings(sub)
    return cmd


class _LazyCommands(MutableMapping):
    """The root's commands by name: listing the names imports nothing; looking one up builds it."""

    def __init__(self, eager: dict):
        self._built = dict(eager)
        self._names = [*COMMANDS, *(n for n in eager if n not in COMMANDS)]

    def __getitem__(self, name: str):
        if name not in self._built:
            if name not in COMMANDS:
                raise KeyError(name)
            self._built[name] = _build(name)
        return self._built[name]

    def __setitem__(self, name: str, cmd) -> None:
        self._built[name] = cmd
        if name not in self._names:
            self._names.append(name)

    def __delitem__(self, name: str) -> None:
        if name not in self._names:
            raise KeyError(name)
        self._built.pop(name, None)
        self._names.remove(name)

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)


class LazyGroup(TyperGroup):
    def __init__(self, *, commands=None, **kwargs):
        super().__init__(commands=_LazyCommands(dict(commands or {})), **kwargs)

    def list_commands(self, ctx) -> list[str]:
        return list(self.commands)  # names only: `scan` must not build (import) the others


app = typer.Typer(
    name="genvis-trust",
    help=(
        "Content provenance and deepfake detection with built-in generators.\n\n"
        "Data goes to stdout (with --json), progress and diagnostics to stderr.\n"
        "Exit codes: 0 ok, 1 a problem was found in the data, 2 usage error."
    ),
    cls=LazyGroup,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)


def _version(value: bool):
    if value:
        typer.echo(f"genvis-trust {__version__}")
        raise typer.Exit()


_FAST_EXIT = False


def _skip_final_collection() -> None:
    """At exit, move every object to the permanent generation so the interpreter's last cycle
    collection (about 0.45 s over torch's objects, after the command's work is done and its
    outputs written) has nothing to walk. Resources are closed explicitly before this (the
    provenance store closes every thread's connection); the OS reclaims the rest."""
    import gc
    import sys

    store = sys.modules.get("genvis_trust.provenance.store")  # imported only by commands that use a store
    if store is not None:
        store.close_open_stores()
    gc.freeze()


@app.callback()
def main(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Show the version."),
):
    global _FAST_EXIT
    if not _FAST_EXIT:
        import atexit

        atexit.register(_skip_final_collection)
        _FAST_EXIT = True


if __name__ == "__main__":  # pragma: no cover
    app()
