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

from typing import Any

from genvis_trust import __version__
from genvis_trust.service_state import (  # noqa: F401  (Limits, ServiceState and the defaults: importable here too)
    DEFAULT_MAX_FILES,
    DEFAULT_MAX_PIXELS,
    DEFAULT_MAX_UPLOAD_BYTES,
    DEFAULT_MAX_VIDEO_S,
    DEFAULT_MIN_UPLOAD_RATE,
    DEFAULT_UPLOAD_GRACE_S,
    FIELD,
    SERVE_EXTRA_HINT,
    Limits,
    MiB,
    ServiceState,
    log,
)


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
