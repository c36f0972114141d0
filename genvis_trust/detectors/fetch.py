"""Fetch a published detector's weights from where its publisher put them and install them as a
toolkit artifact (``detectors fetch NAME``).

The URL comes from the family's :class:`~.published.PublishedCard` (a Hugging Face hub
``resolve`` URL, a GitHub release asset, any direct HTTP(S) URL); plain HTTP, no hub client.
The download goes to a ``.part`` file under :func:`~.installed.downloads_dir` and resumes from
it (HTTP ``Range``) when rerun; a server that sends nothing for ``timeout`` seconds is an error
that says so. The size is checked against ``Content-Length`` / ``Content-Range`` and the card's
size, the sha256 against the card's when known; both are recorded in the installed artifact's
card. The file is then read with ``torch.load(weights_only=True)`` only (a pickle that would
run code is refused and nothing is installed), converted by the family's
``checkpoint_filter_fn`` (:func:`~.importing.import_checkpoint`) and written as
``config.json`` + ``model.safetensors`` + ``card.json`` under :func:`~.installed.detectors_home`,
replacing any earlier install of the same name in one step.

Weights whose licence does not allow commercial use are installed only with
``accept_licence=True``; :func:`licence_notice` is the text shown before asking.
"""

from __future__ import annotations

import hashlib
import os
import re
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from genvis_trust.io import sha256_file

from .importing import import_checkpoint
from .installed import check_replaceable, downloads_dir, install_folder, installed_dir
from .published import PublishedCard, WeightsSource
from .registry import CheckpointImportError, get_family

__all__ = [
    "FetchError",
    "FetchResult",
    "LicenceNotAccepted",
    "default_timeout",
    "download",
    "fetch_detector",
    "licence_notice",
    "pick_source",
    "published_card",
]

DEFAULT_TIMEOUT_S = 60.0
CHUNK = 1 << 20


class FetchError(RuntimeError):
    """A download or a file that could not be installed (nothing was installed)."""


class LicenceNotAccepted(ValueError):
    """Weights under a licence that needs the user's explicit acceptance."""


@dataclass
class FetchResult:
    name: str
    family: str
    variant: str
    path: str  # the installed artifact folder
    source: str  # the URL or the user's file
    sha256: str  # of the published file
    size: int  # bytes of the published file
    weights_sha256: str  # of the artifact's model.safetensors
    resumed_from: int = 0  # bytes already on disk when the download started
    licence: str = "unknown"
    commercial_use: bool | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def default_timeout() -> float:
    """Seconds without data before a download is abandoned: ``$GENVIS_TRUST_FETCH_TIMEOUT`` or 60."""
    v = os.environ.get("GENVIS_TRUST_FETCH_TIMEOUT")
    try:
        return float(v) if v else DEFAULT_TIMEOUT_S
    except ValueError:
        raise ValueError(f"GENVIS_TRUST_FETCH_TIMEOUT={v!r} is not a number of seconds") from None


def published_card(family: str) -> PublishedCard | None:
    """The family's published card, or None for the toolkit's own families."""
    card = getattr(get_family(family).cls, "published", None)
    return card if isinstance(card, PublishedCard) else None


def pick_source(family: str, card: PublishedCard, variant: str | None) -> WeightsSource:
    if not card.weights:
        raise FetchError(f"{family}: its card lists no downloadable weights")
    if variant is None:
        return card.weights[0]
    for w in card.weights:
        if w.variant == variant:
            return w
    raise ValueError(f"{family} has no variant {variant!r}; published: {', '.join(w.variant for w in card.weights)}")


def licence_notice(family: str, card: PublishedCard) -> str:
    """What the user must read and accept before non-commercial weights are downloaded."""
    return (f"The published weights of {family} are licensed under {card.licence}, which does not allow commercial use.\n"
            f"Publication: {card.publication}\nReference code and licence text: {card.repository}\n"
            "Installing them means you accept that licence for your use of these weights. "
            "Rerun with --accept-licence to accept it and install them.")


# -- download

def _part_path(url: str, filename: str, family: str) -> Path:
    # one partial file per URL: a .part of another URL is never resumed into this one
    tag = hashlib.sha256(url.encode()).hexdigest()[:12]
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", filename) or "weights"
    return downloads_dir() / family / f"{tag}-{safe}.part"


def _content_range(value: str | None) -> tuple[int, int | None] | None:
    m = re.match(r"bytes\s+(\d+)-(\d+)/(\d+|\*)", value or "")
    if not m:
        return None
    return int(m[1]), (None if m[3] == "*" else int(m[3]))


def download(url: str, part: Path, *, expected_size: int | None = None, timeout: float = DEFAULT_TIMEOUT_S,
             progress: Callable[[int, int | None], None] | None = None) -> tuple[Path, int]:
    """Download ``url`` into ``part`` (resuming what it already holds); returns ``(part,
    bytes it held before)`` once it is complete. On a truncated transfer the ``.part`` file is
    kept for the next call to resume; on a size that cannot be right it is deleted."""
    from http.client import HTTPException
    from urllib.error import HTTPError, URLError
    from urllib.request import Request, urlopen

    from genvis_trust import __version__

    if urlsplit(url).scheme not in ("http", "https"):
        raise FetchError(f"{url}: only http(s) URLs are fetched")
    host = urlsplit(url).netloc
    part.parent.mkdir(parents=True, exist_ok=True)
    start = part.stat().st_size if part.exists() else 0
    if expected_size is not None and start > expected_size:
        part.unlink()
        start = 0
    resumed = start
    if expected_size is not None and start == expected_size:
        return part, resumed  # complete from an earlier run; the checksum decides
    req = Request(url, headers={"User-Agent": f"genvis-trust/{__version__}", "Accept-Encoding": "identity"})
    if start:
        req.add_header("Range", f"bytes={start}-")

    def stalled() -> FetchError:
        have = part.stat().st_size if part.exists() else 0
        return FetchError(f"{url}: {host} sent nothing for {timeout:g}s (the server stalled); {have} bytes are kept in "
                          f"{part} and a rerun resumes from there (--timeout sets the wait)")

    try:
        resp = urlopen(req, timeout=timeout)  # noqa: S310 - the scheme is checked above
    except HTTPError as e:
        if e.code == 416 and start:  # nothing left to send from there
            cr = re.match(r"bytes\s+\*/(\d+)", e.headers.get("Content-Range") or "")
            if cr is None or int(cr[1]) == start:
                return part, resumed  # complete already (or the server does not say): the checks decide
            part.unlink()  # the file on the server is shorter than our part: it changed, start over
            return download(url, part, expected_size=expected_size, timeout=timeout, progress=progress)
        raise FetchError(f"{url}: HTTP {e.code} {e.reason}") from None
    except TimeoutError:
        raise stalled() from None
    except URLError as e:
        if isinstance(e.reason, TimeoutError):
            raise stalled() from None
        raise FetchError(f"{url}: cannot connect ({e.reason})") from None
    except (HTTPException, OSError) as e:
        raise FetchError(f"{url}: {type(e).__name__}: {e}") from None
    with resp:
        length = resp.headers.get("Content-Length")
        length = int(length) if length and length.isdigit() else None
        total: int | None
        if start and resp.status == 206:
            cr = _content_range(resp.headers.get("Content-Range"))
            if cr is None or cr[0] != start:
                raise FetchError(f"{url}: asked for bytes from {start}, the server answered {resp.headers.get('Content-Range')!r}")
            total = cr[1] if cr[1] is not None else (start + length if length is not None else None)
        else:
            start = resumed = 0  # the server ignored the range (200): start over
            total = length
        if total is not None and expected_size is not None and total != expected_size:
            if part.exists():
                part.unlink()
            raise FetchError(f"{url}: the server offers {total} bytes, the family's card says the file has {expected_size}: "
                             "not the published file (nothing installed)")
        total = total if total is not None else expected_size
        done = start
        with open(part, "ab" if start else "wb") as f:
            while True:
                try:
                    chunk = resp.read(CHUNK)
                except TimeoutError:
                    f.flush()
                    raise stalled() from None
                except (HTTPException, OSError) as e:  # connection reset, IncompleteRead, ...
                    f.flush()
                    raise FetchError(f"{url}: connection lost after {done} of {total or '?'} bytes ({type(e).__name__}); "
                                     "rerun to resume") from None
                if not chunk:
                    break
                f.write(chunk)
                done += len(chunk)
                if total is not None and done > total:
                    f.close()
                    part.unlink()
                    raise FetchError(f"{url}: received more than the {total} bytes announced: not the published file (nothing installed)")
                if progress is not None:
                    progress(done, total)
    if total is not None and done < total:
        raise FetchError(f"{url}: download incomplete, {done} of {total} bytes (the connection closed early); "
                         f"the part is kept in {part} and a rerun resumes from there")
    return part, resumed


# -- install

def _missing_requirements(requires: list[str]) -> list[str]:
    """The card's optional packages (distribution names) that are not installed."""
    from importlib.metadata import PackageNotFoundError, version

    missing = []
    for req in requires:
        name = re.split(r"[<>=!~\[; ]", req, maxsplit=1)[0]
        try:
            version(name)
        except PackageNotFoundError:
            missing.append(req)
    return missing


@contextmanager
def _exclusive(part: Path, url: str) -> Iterator[None]:
    """One fetch of a file at a time: a second one would write into the same ``.part``."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock
        yield
        return
    part.parent.mkdir(parents=True, exist_ok=True)
    with open(part.with_name(part.name + ".lock"), "a") as f:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise FetchError(f"{url}: another fetch of this file is running (lock {f.name}); wait for it to finish") from None
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def fetch_detector(
    family: str,
    *,
    variant: str | None = None,
    from_file: str | os.PathLike | None = None,
    accept_licence: bool = False,
    out: str | os.PathLike | None = None,
    name: str | None = None,
    timeout: float | None = None,
    progress: Callable[[int, int | None], None] | None = None,
    on_licence: Callable[[str], None] | None = None,
    command: str | None = None,
) -> FetchResult:
    """Download (or read ``from_file``), verify, convert and install a published detector.

    Raises :class:`LicenceNotAccepted` (before any download) for non-commercial weights
    without ``accept_licence``, :class:`FetchError` when the download or the file fails a
    check (nothing installed), ``ValueError`` for unknown names."""
    fam = get_family(family)
    if fam.checkpoint_filter_fn is None:
        raise ValueError(f"{family} cannot read published checkpoints (it is the toolkit's own family)")
    card = published_card(family)
    if card is None and from_file is None:
        raise ValueError(f"{family} has no published card with weights to download; pass the file with --from FILE")
    src = pick_source(family, card, variant) if card is not None and (card.weights or from_file is None) else None
    if card is not None and not card.commercial_use:
        notice = licence_notice(family, card)
        if not accept_licence:
            raise LicenceNotAccepted(notice)
        if on_licence is not None:
            on_licence(notice)
    missing = _missing_requirements(card.requires if card is not None else [])
    if missing:
        raise ValueError(f"{family} needs {', '.join(missing)} (not installed): pip install {' '.join(missing)}; nothing downloaded")
    chosen_variant = src.variant if src is not None else (variant or "default")
    if name is None:
        first = card.weights[0].variant if card is not None and card.weights else chosen_variant
        name = family if chosen_variant == first else f"{family}-{chosen_variant}"
    target = check_replaceable(Path(out) if out is not None else installed_dir(name))  # before any download

    with ExitStack() as stack:  # the download's lock, held until the install is done
        resumed = 0
        if from_file is not None:
            path = Path(from_file)
            if not path.is_file():
                raise FetchError(f"{path}: no such file")
            origin = str(path.resolve())
            cleanup = None
        else:
            assert src is not None
            part = _part_path(src.url, src.filename, family)
            stack.enter_context(_exclusive(part, src.url))
            done, resumed = download(src.url, part, expected_size=src.size, timeout=timeout or default_timeout(), progress=progress)
            path = done.with_name(done.name.removesuffix(".part"))  # complete: its own name (and suffix) again
            os.replace(done, path)
            origin = src.url
            cleanup = path
        hint = (f"; for another checkpoint in this layout: genvis-trust detectors import --arch {family}" if from_file is not None else "")
        try:
            size = path.stat().st_size
            if src is not None and src.size is not None and size != src.size:
                raise FetchError(f"{origin}: {size} bytes, the family's card says {src.size} for {chosen_variant!r}: "
                                 f"not the published file (nothing installed){hint}")
            sha = sha256_file(path)
            if src is not None and src.sha256 and sha != src.sha256.lower():
                raise FetchError(f"{origin}: sha256 {sha}, the family's card says {src.sha256} for {chosen_variant!r}: "
                                 f"not the published file (nothing installed){hint}")
            try:
                det = import_checkpoint(path, family, key=card.checkpoint_key if card else None)
            except CheckpointImportError as e:
                raise FetchError(f"refused {origin}: {e} (nothing installed)") from None
        except FetchError:
            if cleanup is not None and cleanup.exists():
                cleanup.unlink()  # a file that failed a check is not resumed into
            raise
        source = {"url" if from_file is None else "file": origin, "filename": src.filename if src else path.name,
                  "sha256": sha, "size": size, "variant": chosen_variant,
                  "sha256_matches_card": (sha == src.sha256.lower()) if src is not None and src.sha256 else None,
                  "fetched_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        art_card = {
            "name": name,
            "summary": f"{family}: the publisher's weights ({chosen_variant}), uncalibrated (p = sigmoid of the published logit)",
            "published": card.to_dict() if card is not None else None,
            "licence": card.licence if card is not None else "unknown (the family has no published card)",
            "commercial_use": card.commercial_use if card is not None else None,
            "licence_accepted": bool(accept_licence) if card is not None and not card.commercial_use else None,
            "source": source,
            "command": command,
        }
        weights_sha = install_folder(target, lambda tmp: det.save(tmp, card=art_card))
        if cleanup is not None and cleanup.exists():
            cleanup.unlink()  # the artifact holds the same weights; the card, the file's sha256
    return FetchResult(name=name, family=family, variant=chosen_variant, path=str(target), source=origin, sha256=sha,
                       size=size, weights_sha256=str(weights_sha), resumed_from=resumed,
                       licence=art_card["licence"], commercial_use=art_card["commercial_use"])

