"""Atomic output: readers (and a rerun after a crash) see the old file or the new one, never
half of one.

Every artifact, manifest, card, report and key the toolkit writes goes through here: bytes
and text with :func:`atomic_write_bytes` / :func:`atomic_write_text`, and files written by
a library that wants a path (safetensors, matplotlib) with :func:`atomic_path`.

>>> import tempfile, os
>>> d = tempfile.mkdtemp()
>>> atomic_write_text(os.path.join(d, "a.txt"), "one")
>>> with atomic_path(os.path.join(d, "a.txt")) as tmp:
...     _ = open(tmp, "w").write("two")
>>> open(os.path.join(d, "a.txt")).read(), sorted(os.listdir(d))
('two', ['a.txt'])
"""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def atomic_write_bytes(path: str | os.PathLike, data: bytes, mode: int | None = None, *, sync: bool = True) -> None:
    """Write ``data`` to ``path`` so readers see the old file or the new one, never half.

    The bytes go to a temporary file that starts at 0o600, so nothing is readable before
    ``mode`` is applied (keys: 0o600). Without ``mode``, an existing file keeps its
    permissions and a new one gets the usual ``0o666 & ~umask``. ``sync=False`` skips the
    fsyncs, for derived files rewritten by the next run (a report's thousands of thumbnails).
    """
    with atomic_path(path, mode, sync=sync) as tmp, open(tmp, "wb") as f:
        f.write(data)


def atomic_write_text(path: str | os.PathLike, text: str, mode: int | None = None) -> None:
    """:func:`atomic_write_bytes` for UTF-8 text."""
    atomic_write_bytes(path, text.encode("utf-8"), mode=mode)


@contextmanager
def atomic_path(path: str | os.PathLike, mode: int | None = None, *, sync: bool = True) -> Iterator[Path]:
    """A temporary path beside ``path`` for a library to write to; on success it is synced
    and renamed onto ``path``, on any error it is removed and ``path`` is left as it was.

    The temporary file starts at 0o600, so nothing is readable before ``mode`` is applied.
    """
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    mode = _target_mode(p) if mode is None else mode
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb+") as f:
            os.fchmod(f.fileno(), mode)
            if sync:
                os.fsync(f.fileno())
        os.replace(tmp, p)
    except BaseException:
        _discard(tmp)
        raise
    if sync:
        _fsync_dir(p.parent)


def _target_mode(p: Path) -> int:
    try:
        return stat.S_IMODE(p.stat().st_mode)
    except FileNotFoundError:
        return 0o666 & ~_umask()


def _discard(tmp: str) -> None:
    try:
        os.unlink(tmp)
    except FileNotFoundError:
        pass


def _umask() -> int:
    # Reading the umask by setting it races with other threads; /proc avoids that on Linux.
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    current = os.umask(0o022)
    os.umask(current)
    return current


def _fsync_dir(directory: Path) -> None:
    # Make the rename itself durable; not every platform or filesystem allows it.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
