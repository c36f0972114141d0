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
app is made, so the rest of the toolkit works without it. The API docs (``/docs``,
``/redoc``) are served from assets bundled with ``fastapi-offline``: they work without
internet access.

>>> create_app  # doctest: +ELLIPSIS
<function create_app at ...>
"""

import json
import logging
import math
import secrets
from contextlib import asynccontextmanager
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
        import anyio
        from fastapi import Depends, HTTPException, Request
        from fastapi.responses import JSONResponse, Response
        from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
        from fastapi_offline import FastAPIOffline
        from starlette.formparsers import MultiPartException, MultiPartParser
        from starlette.formparsers import multipart as _python_multipart
        from starlette.requests import ClientDisconnect
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError(f"{SERVE_EXTRA_HINT} ({e})") from e
    if _python_multipart is None:  # pragma: no cover - starlette imports it optionally
        raise ImportError(f"{SERVE_EXTRA_HINT} (python-multipart is missing)")

    max_uploads = 4 * int(max_concurrency) if max_uploads is None else max_uploads
    for name, value in (("max_upload_bytes", max_upload_bytes), ("max_files", max_files),
                        ("max_pixels", max_pixels), ("max_concurrency", max_concurrency),
                        ("max_uploads", max_uploads)):
        if int(value) < 1:
            raise ValueError(f"{name} must be at least 1, got {value}")
    limits = {
        "max_upload_bytes": int(max_upload_bytes),
        "max_files": int(max_files),
        "max_pixels": int(max_pixels),
        "max_concurrency": int(max_concurrency),
        "queue_timeout_s": float(queue_timeout_s),
        "upload_timeout_s": float(upload_timeout_s),
        "min_upload_rate": float(min_upload_rate),
        "upload_grace_s": float(upload_grace_s),
        "max_uploads": int(max_uploads),
    }
    retry_after = str(max(1, math.ceil(queue_timeout_s)))
    state: dict[str, Any] = {}

    @asynccontextmanager
    async def lifespan(app):
        from genvis_trust.scan import Scanner

        # in a thread: loading weights must not stall a loop that may already serve others
        from genvis_trust.video import VideoLimits, VideoOptions

        video = scanner_kwargs.get("video") or VideoOptions(
            limits=VideoLimits(max_pixels=max_pixels, max_duration_s=DEFAULT_MAX_VIDEO_S))
        scanner = await anyio.to_thread.run_sync(
            lambda: Scanner(detector, max_pixels=max_pixels, **{**scanner_kwargs, "video": video})
        )
        state.update(scanner=scanner, slots=anyio.Semaphore(max_concurrency), in_flight=0, waiting=0, receiving=0,
                     # scans get their own threads, not the pool Starlette uses to spool uploads
                     threads=anyio.CapacityLimiter(max_concurrency),
                     health=_health(scanner, limits, token is not None))
        log.info("genvis-trust service ready: detector %s (sha256 %s), limits %s",
                 scanner.detector.name, scanner.detector.sha256, limits)
        try:
            yield
        finally:
            scanner.close()

    app = FastAPIOffline(
        title="genvis-trust",
        version=__version__,
        description="Scan uploaded images for evidence of generation: C2PA, metadata, watermarks, detector.",
        lifespan=lifespan,
    )

    @app.exception_handler(Exception)
    async def _internal(request, exc):  # a 500 is JSON like every other error
        return JSONResponse({"detail": f"internal error: {type(exc).__name__}"}, status_code=500)

    bearer = HTTPBearer(auto_error=False, description="Needed when the service was started with a token.")

    def check_token(credentials: HTTPAuthorizationCredentials | None = Depends(bearer)) -> None:
        if token is None:
            return
        given = credentials.credentials if credentials is not None else ""
        if not secrets.compare_digest(given.encode(), token.encode()):
            msg = "missing bearer token" if credentials is None else "wrong bearer token"
            raise HTTPException(401, msg, headers={"WWW-Authenticate": "Bearer"})

    @app.get("/health")
    async def health() -> dict:
        """The loaded detector (name, sha256, version), the schema version, the limits, and
        how many requests are sending their body (``receiving``), hold a scan slot
        (``in_flight``) or wait for one (``waiting``)."""
        return {**state["health"], "receiving": state["receiving"], "in_flight": state["in_flight"],
                "waiting": state["waiting"]}

    @app.post("/scan", dependencies=[Depends(check_token)])
    async def scan(request: Request, full: bool = False) -> Response:
        """Scan one or many images sent as multipart field ``files``; one record per file,
        in upload order (``?full=true`` adds each image's full provenance report)."""
        ctype = request.headers.get("content-type", "")
        if not ctype.lower().startswith("multipart/form-data"):
            raise HTTPException(415, f"send multipart/form-data with the images in field {FIELD!r}, got {ctype or 'no content type'!r}")
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > max_upload_bytes:
            raise HTTPException(413, _too_big(int(declared), max_upload_bytes))

        if state["receiving"] >= max_uploads:
            raise HTTPException(503, f"busy: {max_uploads} upload(s) already being received; retry later",
                                headers={"Retry-After": retry_after})
        state["receiving"] += 1
        try:
            files = await _read_files(request)
        finally:
            state["receiving"] -= 1

        got_slot = False
        state["waiting"] += 1
        try:
            with anyio.move_on_after(queue_timeout_s):
                await state["slots"].acquire()
                got_slot = True
        finally:
            state["waiting"] -= 1
        if not got_slot:
            raise HTTPException(503, f"busy: {max_concurrency} scan(s) in progress and none finished "
                                f"within {queue_timeout_s:g} s; retry later", headers={"Retry-After": retry_after})
        state["in_flight"] += 1
        try:
            results = await anyio.to_thread.run_sync(_scan, state["scanner"], files, full, limiter=state["threads"])
        finally:
            state["in_flight"] -= 1
            state["slots"].release()
        body = json.dumps({"schema_version": SCAN_SCHEMA_VERSION, "results": results}, sort_keys=True, default=str)
        return Response(body, media_type="application/json")

    async def _read_files(request: Request) -> list[tuple[str, bytes]]:
        form = None
        try:
            with anyio.fail_after(upload_timeout_s):
                body = _paced(request.stream(), max_upload_bytes, min_upload_rate, upload_grace_s)
                parser = MultiPartParser(request.headers, body,
                                         max_files=max_files, max_fields=8)
                form = await parser.parse()
                files = []
                for name, value in form.multi_items():
                    if name != FIELD:
                        raise HTTPException(400, f"unexpected form field {name!r}; send images in field {FIELD!r}")
                    if isinstance(value, str):
                        raise HTTPException(400, f"field {FIELD!r} must be a file part (with a filename), not text")
                    files.append((value.filename or f"<upload {len(files)}>", await value.read()))
        except _TooLarge as e:
            raise HTTPException(413, str(e)) from None
        except _TooSlow as e:
            raise HTTPException(408, str(e)) from None
        except ClientDisconnect:
            raise HTTPException(400, "client disconnected during the upload") from None
        except TimeoutError:
            raise HTTPException(408, f"upload not finished within {upload_timeout_s:g} s") from None
        except MultiPartException as e:
            if e.message.startswith("Too many files"):
                raise HTTPException(413, f"too many files: at most {max_files} per request") from None
            raise HTTPException(400, f"malformed multipart body: {e.message}") from None
        finally:
            if form is not None:
                await form.close()
        if not files:
            raise HTTPException(400, f"no files: send one or more images in multipart field {FIELD!r}")
        return files

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


def _health(scanner, limits: dict, auth: bool) -> dict:
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
        "limits": limits,
    }
