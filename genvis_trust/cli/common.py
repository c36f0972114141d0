"""What every command shares: one stderr console, JSON to stdout, clear failures.

Exit codes: 0 success; 1 the command ran but found a problem (bad data, failed
verification, errors in some inputs); 2 usage error (bad options, unknown names).
"""

from __future__ import annotations

import json
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
