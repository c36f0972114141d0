"""The scan service: ``POST /scan`` with uploaded images, the same JSON as ``scan --json``.

The detector is loaded once, when the app starts (its lifespan). Each admitted request
is scanned by that one :class:`~genvis_trust.scan.Scanner` in a worker thread (its files
share the engine's batches), so the event loop never runs a decoder or the network, and
concurrent requests overlap one another's decoding, provenance checks and forward passes.
(One thread batching files across requests was tried: on two busy CPU cores it
serialised those stages and served 50 concurrent 256-pixel uploads with provenance on
slower, 5-12 against 15-18 requests/s, so requests are not merged.)

Limits, each refused the same way every time:

- ``Authorization: Bearer TOKEN`` when a token is configured, else **401** (``/health``
  stays open so a load balancer can probe it);
- the request body (files plus multipart framing) over ``max_upload_bytes``: **413**, from
  ``Content-Length`` before any byte is read, and while reading for uploads without one;
- more than ``max_files`` files: **413**; no files, or a field other than ``files``: **400**;
- a body not received within ``upload_timeout_s``, or arriving slower than
  ``min_upload_rate`` bytes/s on average once ``upload_grace_s`` has passed: **408**, at
  the moment the rate falls short (a stalled client is not waited for), so slow
  uploaders cannot hold the service;
- more than ``max_uploads`` bodies being received at once: **503** with ``Retry-After``
  at once (memory stays bounded by ``max_uploads x max_upload_bytes``);
- more than ``max_concurrency`` scans at once: the next ones wait up to
  ``queue_timeout_s`` for a slot, then get **503** with ``Retry-After``. A slot is taken
  only once the whole body is in, so only scanning, never a client's upload, holds one;
- an image over ``max_pixels``: not a failed request but that file's record, with the
  error code ``too_large`` (like every other file that cannot be read);
- a video (one record from sampled frames, :mod:`genvis_trust.video`) with frames over
  ``max_pixels`` or longer than :data:`DEFAULT_MAX_VIDEO_S` (pass ``video=VideoOptions(...)``
  to change it): that file's record, ``too_large``, checked before decoding.

Errors are JSON ``{"detail": ...}``. FastAPI is the ``serve`` extra, imported only when an
app is made (the routes live in :mod:`genvis_trust.service_routes`, at module level, and
read the app's typed :class:`ServiceState`), so the rest of the toolkit works without it. The API docs (``/docs``,
``/redoc``) are served from assets bundled with ``fastapi-offline``: they work without
internet access.

>>> create_app  # doctest: +ELLIPSIS
<function create_app at ...>
"""

import logging
import math
from dataclasses import asdict, dataclass, field
from typing import Any

from genvis_trust import __version__
from genvis_trust.scan import SCAN_SCHEMA_VERSION

log = logging.getLogger("genvis_trust.service")

MiB = 1024 * 1024
DEFAULT_MAX_UPLOAD_BYTES = 20 * MiB
DEFAULT_MAX_FILES = 32
# Lower than the library's 64 MP: a service decodes many uploads at once, each up to
# max_pixels x 3 bytes in memory. 25 MP still takes a 6000x4000 camera photo.
DEFAULT_MAX_PIXELS = 25_000_000
# A 20 MiB upload at the minimum rate takes under 3 minutes; a 64 kB photo at 20 bytes/s
# (a slow-loris client) is cut off after ~2 s instead of holding memory for an hour.
DEFAULT_MIN_UPLOAD_RATE = 16 * 1024
DEFAULT_UPLOAD_GRACE_S = 2.0
# A video upload is decoded whole (for scene cuts): bound the work a 20 MiB request can ask for.
DEFAULT_MAX_VIDEO_S = 300.0
FIELD = "files"
SERVE_EXTRA_HINT = 'the service needs the serve extra: pip install "genvis-trust[serve]"'


@dataclass(frozen=True)
class Limits:
    """What the service admits; reported by ``/health`` as is."""

    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES
    max_files: int = DEFAULT_MAX_FILES
    max_pixels: int = DEFAULT_MAX_PIXELS
    max_concurrency: int = 4
    queue_timeout_s: float = 10.0
    upload_timeout_s: float = 60.0
    min_upload_rate: float = DEFAULT_MIN_UPLOAD_RATE
    upload_grace_s: float = DEFAULT_UPLOAD_GRACE_S
    max_uploads: int = 16

    def __post_init__(self):
        for name in ("max_upload_bytes", "max_files", "max_pixels", "max_concurrency", "max_uploads"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")

    @property
    def retry_after(self) -> str:
        return str(max(1, math.ceil(self.queue_timeout_s)))


@dataclass
class ServiceState:
    """One app's state: what it was made with, what its lifespan loaded, and the counters
    ``/health`` reports. Routes find it at ``request.app.state.service``."""

    limits: Limits
    detector: Any  # a bundled name, an artifact folder or a loaded Detector
    scanner_kwargs: dict[str, Any]
    token: str | None = None
    scanner: Any = None  # the Scanner, once the lifespan has loaded it
    slots: Any = None  # anyio.Semaphore(max_concurrency): a scan holds one
    threads: Any = None  # anyio.CapacityLimiter: scans get their own threads, not the upload pool
    health: dict[str, Any] = field(default_factory=dict)
    receiving: int = 0  # bodies being received
    in_flight: int = 0  # scans holding a slot
    waiting: int = 0  # scans waiting for one


class _TooLarge(Exception):
    pass


class _TooSlow(Exception):
    pass


def _scan(scanner, files: list[tuple[str, bytes]], full: bool) -> list[dict]:
    # Bytes, never paths: a client's file name only labels its record.
    results = scanner.scan([data for _, data in files], names=[name for name, _ in files])
    return [r.to_dict(full=full) for r in results]


def create_app(
    detector="default",
    *,
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES,
    max_files: int = DEFAULT_MAX_FILES,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_concurrency: int = 4,
    queue_timeout_s: float = 10.0,
    upload_timeout_s: float = 60.0,
    min_upload_rate: float = DEFAULT_MIN_UPLOAD_RATE,
    upload_grace_s: float = DEFAULT_UPLOAD_GRACE_S,
    max_uploads: int | None = None,
    token: str | None = None,
    **scanner_kwargs: Any,
):
    """A FastAPI app scanning uploads with one :class:`~genvis_trust.scan.Scanner`.

    ``detector`` is a bundled name, an artifact folder or a loaded ``Detector``;
    ``scanner_kwargs`` go to the Scanner (``device``, ``provenance``, ``store``,
    ``trust_anchors``, ``watermark_backends``, ``check_stability``, ...). ``max_uploads``
    defaults to four times ``max_concurrency``. Run it with any
    ASGI server, e.g. ``uvicorn.run(create_app(...))``, or ``genvis-trust serve``.
    """
    try:
        from fastapi.responses import JSONResponse
        from fastapi_offline import FastAPIOffline
        from starlette.formparsers import multipart as _python_multipart

        from genvis_trust import service_routes
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError(f"{SERVE_EXTRA_HINT} ({e})") from e
    if _python_multipart is None:  # pragma: no cover - starlette imports it optionally
        raise ImportError(f"{SERVE_EXTRA_HINT} (python-multipart is missing)")

    limits = Limits(
        max_upload_bytes=int(max_upload_bytes), max_files=int(max_files), max_pixels=int(max_pixels),
        max_concurrency=int(max_concurrency), queue_timeout_s=float(queue_timeout_s),
        upload_timeout_s=float(upload_timeout_s), min_upload_rate=float(min_upload_rate),
        upload_grace_s=float(upload_grace_s),
        max_uploads=4 * int(max_concurrency) if max_uploads is None else int(max_uploads),
    )
    app = FastAPIOffline(
        title="genvis-trust",
        version=__version__,
        description="Scan uploaded images for evidence of generation: C2PA, metadata, watermarks, detector.",
        lifespan=service_routes.lifespan,
    )
    app.state.service = ServiceState(limits, detector, dict(scanner_kwargs), token)

    @app.exception_handler(Exception)
    async def _internal(request, exc):  # a 500 is JSON like every other error
        return JSONResponse({"detail": f"internal error: {type(exc).__name__}"}, status_code=500)

    app.include_router(service_routes.router)
    return app


async def _paced(stream, limit: int, min_rate: float, grace_s: float):
    """The request body, refused once it passes ``limit`` bytes (for uploads sent without a
    Content-Length; uvicorn holds the others to the length they declared), or as soon as
    fewer than ``min_rate x (elapsed - grace_s)`` bytes have arrived. The wait for each chunk
    is bounded by the moment the average would fall short, so a client that stalls is cut
    off then, not when it next sends a byte."""
    import anyio

    n = 0
    t0 = anyio.current_time()
    chunks = stream.__aiter__()
    while True:
        due = t0 + grace_s + n / min_rate if min_rate > 0 else math.inf
        try:
            with anyio.fail_after(max(0.0, due - anyio.current_time())):
                chunk = await chunks.__anext__()
        except StopAsyncIteration:
            return
        except TimeoutError:
            raise _TooSlow(f"upload too slow: {n} bytes in {anyio.current_time() - t0:.1f} s; the minimum "
                           f"is {min_rate:g} bytes/s on average after the first {grace_s:g} s") from None
        n += len(chunk)
        if n > limit:
            raise _TooLarge(_too_big(n, limit, more_than=True))
        yield chunk


def _too_big(n: int, limit: int, more_than: bool = False) -> str:
    size = f"more than {limit} bytes" if more_than else f"{n} bytes"
    return f"upload too large: {size}; the limit is {limit} bytes ({limit / MiB:g} MiB) per request"


def _health(scanner, limits: Limits, auth: bool) -> dict:
    from genvis_trust.detectors.registry import get_family

    det = scanner.detector
    try:
        family_version = get_family(det.family).version
    except Exception:  # an imported checkpoint's family may not be registered by name
        family_version = None
    return {
        "status": "ok",
        "version": __version__,
        "schema_version": SCAN_SCHEMA_VERSION,
        "detector": {
            "name": det.name,
            "family": det.family,
            "family_version": family_version,
            "sha256": det.sha256,
            "calibrated": det.calibrated,
            "device": str(det.device),
        },
        "provenance": scanner.provenance,
        "auth": "bearer" if auth else "none",
        "limits": asdict(limits),
    }
