"""Detectors the user installed (``detectors fetch``, ``detectors stack``): where they live and
how a folder of them is replaced without a reader ever seeing half of one.

The home is ``$GENVIS_TRUST_HOME`` when set, else ``$XDG_CACHE_HOME/genvis-trust``, else
``~/.cache/genvis-trust``; installed detectors are artifact folders under its ``detectors/``
(one per name), partial downloads under its ``downloads/``.

>>> import os, tempfile
>>> os.environ["GENVIS_TRUST_HOME"] = tempfile.mkdtemp()
>>> list_installed()
{}
>>> del os.environ["GENVIS_TRUST_HOME"]
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

__all__ = ["check_replaceable", "detectors_home", "downloads_dir", "install_folder", "installed_dir", "list_installed", "toolkit_home"]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


def toolkit_home() -> Path:
    """The per-user folder the toolkit keeps installed detectors and downloads in."""
    env = os.environ.get("GENVIS_TRUST_HOME")
    if env:
        return Path(env).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME")
    return (Path(cache).expanduser() if cache else Path.home() / ".cache") / "genvis-trust"


def detectors_home() -> Path:
    return toolkit_home() / "detectors"


def downloads_dir() -> Path:
    return toolkit_home() / "downloads"


def check_name(name: str) -> str:
    """An installed detector's name is a folder name: letters, digits, ``.``, ``_``, ``-``."""
    if not _NAME.match(name or "") or name in (".", ".."):
        raise ValueError(f"{name!r} is not a usable detector name (letters, digits, '.', '_', '-'; at most 100)")
    return name


def installed_dir(name: str) -> Path:
    return detectors_home() / check_name(name)


def list_installed() -> dict[str, Path]:
    """``{name: folder}`` of every installed detector (a folder with ``config.json``)."""
    home = detectors_home()
    if not home.is_dir():
        return {}
    return {p.name: p for p in sorted(home.iterdir()) if not p.name.startswith(".") and (p / "config.json").is_file()}


def check_replaceable(target: str | os.PathLike) -> Path:
    """``target`` as a Path, if an artifact may be written there: nothing, an empty folder or an
    earlier artifact; never a folder of something else (raises FileExistsError)."""
    target = Path(target)
    if target.exists() and not (target.is_dir() and (not any(target.iterdir()) or (target / "config.json").is_file())):
        raise FileExistsError(f"{target} exists and is not a detector artifact folder: choose another --out")
    return target


def install_folder(target: str | os.PathLike, write: Callable[[Path], object]) -> object:
    """Write an artifact folder with ``write(tmp_folder)`` beside ``target``, then put it in
    ``target``'s place: a reader sees the old folder or the new one, never a mix, and a
    failure leaves ``target`` as it was. Only an earlier artifact (a folder with
    ``config.json``) or an empty folder is replaced. Returns what ``write`` returned."""
    target = check_replaceable(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    old = None
    try:
        result = write(tmp)
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old", dir=target.parent))
            os.replace(target, old / "prev")
        os.replace(tmp, target)
    except BaseException:
        if old is not None and (old / "prev").exists() and not target.exists():
            os.replace(old / "prev", target)
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return result
