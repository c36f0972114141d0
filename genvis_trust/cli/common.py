"""What every command shares: one stderr console, JSON to stdout, clear failures.

Exit codes: 0 success; 1 the command ran but found a problem (bad data, failed
verification, errors in some inputs); 2 usage error (bad options, unknown names).
"""

from __future__ import annotations

import json
import shlex
import sys
from contextlib import contextmanager
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

err = Console(stderr=True)
out = Console()  # human-readable data (tables) goes to stdout like JSON does

EXIT_OK, EXIT_PROBLEM, EXIT_USAGE = 0, 1, 2


def print_json(obj: Any) -> None:
    """Data goes to stdout, one document."""
    sys.stdout.write(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def fail(message: str, code: int = EXIT_PROBLEM) -> None:
    from rich.markup import escape

    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False)
    raise typer.Exit(code)


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
