"""What every command shares: one stderr console, JSON to stdout, clear failures.

Exit codes: 0 success; 1 the command ran but found a problem (bad data, failed
verification, errors in some inputs); 2 usage error (bad options, unknown names).
"""

from __future__ import annotations

import json
import shlex
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


def _console(stderr: bool) -> Console:
    stream = sys.stderr if stderr else sys.stdout
    try:
        tty = stream.isatty()
    except (AttributeError, ValueError):
        tty = False
    # Piped or redirected output goes to programs and logs: rich would wrap it at 80
    # columns, splitting file names across lines. Only a terminal gets wrapped to fit.
    return Console(stderr=stderr, width=None if tty else 1_000_000)


err = _console(stderr=True)
out = _console(stderr=False)  # human-readable data (tables) goes to stdout like JSON does

EXIT_OK, EXIT_PROBLEM, EXIT_USAGE = 0, 1, 2


def print_json(obj: Any) -> None:
    """Data goes to stdout, one document."""
    sys.stdout.write(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


# A library argument and the flag a command exposes it as, where the names differ.
_FLAG_ALIASES = {"overwrite": ("overwrite", "force"), "force": ("force", "overwrite")}


def _current_context():
    # typer >= 0.20 runs on its own copy of click; older typer on click itself
    import importlib

    for module in ("typer._click.globals", "click"):
        try:
            ctx = importlib.import_module(module).get_current_context(silent=True)
        except (ImportError, AttributeError):
            continue
        if ctx is not None:
            return ctx
    return None


def in_cli_words(message: str) -> str:
    """A library message in the running command's vocabulary: ``pass resume=True`` becomes
    ``pass --resume``, ``overwrite=True`` the command's ``--force`` (or ``--overwrite``)."""
    import re

    ctx = _current_context()
    if ctx is None:
        return message
    params = {p.name: p for p in ctx.command.params if p.param_type_name == "option"}

    def flag(m: re.Match) -> str:
        for name in _FLAG_ALIASES.get(m[1], (m[1],)):
            if name in params and getattr(params[name], "is_flag", False):
                opts = params[name].opts
                return "--force" if "--force" in opts else max(opts, key=len)
        return m[0]

    return re.sub(r"\b([a-z_]+)=True\b", flag, message)


def fail(message: str, code: int = EXIT_PROBLEM) -> None:
    from rich.markup import escape

    err.print(f"[bold red]error:[/] {escape(in_cli_words(message))}", highlight=False)
    raise typer.Exit(code)


def check_path(path, kind: str = "file", what: str = "", hint: str = ""):
    """Refuse a path argument (exit 2) with what is wrong with it: it does not exist, it is a
    file where a folder is wanted (or the reverse), or it is neither (a device, a pipe);
    ``what`` names the argument ("folder to audit"), ``hint`` the next step. Returns ``path``.

    >>> check_path(Path("."), "folder")
    PosixPath('.')
    """
    import os

    path = Path(path)
    label = f"{path}: {what + ' ' if what else ''}"
    tail = f"; {hint}" if hint else ""
    if not path.exists():
        if path.is_symlink():
            fail(f"{label}is a symbolic link to {os.readlink(path)}, which does not exist{tail}", EXIT_USAGE)
        parent = path.parent
        missing_parent = str(parent) not in ("", ".") and not parent.exists()
        fail(f"{label}does not exist" + (f" (nor does the folder {parent})" if missing_parent else "") + tail,
             EXIT_USAGE)
    if kind == "folder" and not path.is_dir():
        fail(f"{label}is a file, not a folder{tail}" if path.is_file() else
             f"{label}is not a folder (a device, pipe or socket){tail}", EXIT_USAGE)
    if kind == "file" and not path.is_file():
        fail(f"{label}is a folder, not a file{tail}" if path.is_dir() else
             f"{label}is not a regular file (a device, pipe or socket){tail}", EXIT_USAGE)
    return path


def progress() -> Progress:
    """A progress bar on stderr (hidden when stderr is not a terminal and CI is quiet)."""
    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=False,
    )


@contextmanager
def phase(description: str):
    """A step that may take a while: a spinner on a terminal, and its duration on stderr
    when it took more than a second (so logs show where the time went)."""
    import time

    t0 = time.perf_counter()
    with err.status(description):
        yield
    dt = time.perf_counter() - t0
    if dt > 1:
        err.print(f"{description}: {dt:.1f}s", highlight=False)


@contextmanager
def friendly_errors(*types: type[BaseException]):
    """Turn the toolkit's own error types into one clear line and exit code 2."""
    try:
        yield
    except types as e:
        fail(str(e), EXIT_USAGE)


def command_line(ctx: typer.Context | None = None) -> str:
    """The running command, rebuilt from its parsed parameters (defaults left out), so the
    card holds a command that reproduces the run however it was invoked (shell, tests, API)."""
    if ctx is None:
        return " ".join(shlex.quote(a) for a in ["genvis-trust", *sys.argv[1:]])
    words = ["genvis-trust", *ctx.command_path.split()[1:]]
    for p in ctx.command.params:
        v = ctx.params.get(p.name)
        if p.param_type_name == "argument":
            words.append(str(v))
            continue
        if v is None or v == p.default or (isinstance(v, (list, tuple)) and not v):
            continue
        flag = max(p.opts, key=len)
        if getattr(p, "is_flag", False):
            words.append(flag if v else (p.secondary_opts[0] if p.secondary_opts else flag))
        elif getattr(p, "multiple", False):
            for item in v:
                words += [flag, str(item)]
        elif isinstance(v, (list, tuple)):
            words += [flag, *map(str, v)]
        else:
            words += [flag, str(v)]
    return " ".join(shlex.quote(w) for w in words)
