"""The scan service's routes and lifespan, at module level (FastAPI, the ``serve`` extra).

Imported by :func:`genvis_trust.service.create_app` only, so importing the service module
never imports FastAPI. Every handler reads its app's typed
:class:`~genvis_trust.service.ServiceState` (``request.app.state.service``); what the
limits mean is documented in :mod:`genvis_trust.service`. It imports what it shares with
that module from :mod:`genvis_trust.service_state`, never the service module itself.
"""

from __future__ import annotations

import json
import math
import secrets
from contextlib import asynccontextmanager
from dataclasses import asdict

import anyio
from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import ClientDisconnect

from genvis_trust import __version__
from genvis_trust.scan import SCAN_SCHEMA_VERSION
from genvis_trust.service_state import DEFAULT_MAX_VIDEO_S, FIELD, Limits, MiB, ServiceState, log

router = APIRouter()
bearer = HTTPBearer(auto_error=False, description="Needed when the service was started with a token.")


def _state(request: Request) -> ServiceState:
    return request.app.state.service


@asynccontextmanager
async def lifespan(app):
    from genvis_trust.media import VideoLimits, VideoOptions
    from genvis_trust.scan import Scanner

    st: ServiceState = app.state.service
    lim = st.limits
    video = st.scanner_kwargs.get("video") or VideoOptions(
        limits=VideoLimits(max_pixels=lim.max_pixels, max_duration_s=DEFAULT_MAX_VIDEO_S))
    # in a thread: loading weights must not stall a loop that may already serve others
    st.scanner = await anyio.to_thread.run_sync(
        lambda: Scanner(st.detector, max_pixels=lim.max_pixels, **{**st.scanner_kwargs, "video": video})
    )
    st.slots = anyio.Semaphore(lim.max_concurrency)
    st.threads = anyio.CapacityLimiter(lim.max_concurrency)  # scans get their own threads, not the upload pool
    st.health = _health(st.scanner, lim, st.token is not None)
    st.receiving = st.in_flight = st.waiting = 0
    log.info("genvis-trust service ready: detector %s (sha256 %s), limits %s",
             st.scanner.detector.name, st.scanner.detector.sha256, lim)
    try:
        yield
    finally:
        st.scanner.close()


def check_token(request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(bearer)) -> None:
    token = _state(request).token
    if token is None:
        return
    given = credentials.credentials if credentials is not None else ""
    if not secrets.compare_digest(given.encode(), token.encode()):
        msg = "missing bearer token" if credentials is None else "wrong bearer token"
        raise HTTPException(401, msg, headers={"WWW-Authenticate": "Bearer"})


@router.get("/health")
async def health(request: Request) -> dict:
    """The loaded detector (name, sha256, version), the schema version, the limits, and
    how many requests are sending their body (``receiving``), hold a scan slot
    (``in_flight``) or wait for one (``waiting``)."""
    st = _state(request)
    return {**st.health, "receiving": st.receiving, "in_flight": st.in_flight, "waiting": st.waiting}


@router.post("/scan", dependencies=[Depends(check_token)])
async def scan(request: Request, full: bool = False) -> Response:
    """Scan one or many images sent as multipart field ``files``; one record per file,
    in upload order (``?full=true`` adds each image's full provenance report)."""
    st = _state(request)
    lim = st.limits
    ctype = request.headers.get("content-type", "")
    if not ctype.lower().startswith("multipart/form-data"):
        raise HTTPException(415, f"send multipart/form-data with the images in field {FIELD!r}, got {ctype or 'no content type'!r}")
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > lim.max_upload_bytes:
        raise HTTPException(413, _too_big(int(declared), lim.max_upload_bytes))

    if st.receiving >= lim.max_uploads:
        raise HTTPException(503, f"busy: {lim.max_uploads} upload(s) already being received; retry later",
                            headers={"Retry-After": lim.retry_after})
    st.receiving += 1
    try:
        files = await _read_files(request, st)
    finally:
        st.receiving -= 1

    got_slot = False
    st.waiting += 1
    try:
        with anyio.move_on_after(lim.queue_timeout_s):
            await st.slots.acquire()
            got_slot = True
    finally:
        st.waiting -= 1
    if not got_slot:
        raise HTTPException(503, f"busy: {lim.max_concurrency} scan(s) in progress and none finished "
                            f"within {lim.queue_timeout_s:g} s; retry later", headers={"Retry-After": lim.retry_after})
    st.in_flight += 1
    try:
        results = await anyio.to_thread.run_sync(_scan, st.scanner, files, full, limiter=st.threads)
    finally:
        st.in_flight -= 1
        st.slots.release()
    body = json.dumps({"schema_version": SCAN_SCHEMA_VERSION, "results": results}, sort_keys=True, default=str)
    return Response(body, media_type="application/json")


async def _read_files(request: Request, st: ServiceState) -> list[tuple[str, bytes]]:
    lim = st.limits
    form = None
    try:
        with anyio.fail_after(lim.upload_timeout_s):
            body = _paced(request.stream(), lim.max_upload_bytes, lim.min_upload_rate, lim.upload_grace_s)
            parser = MultiPartParser(request.headers, body, max_files=lim.max_files, max_fields=8)
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
        raise HTTPException(408, f"upload not finished within {lim.upload_timeout_s:g} s") from None
    except MultiPartException as e:
        if e.message.startswith("Too many files"):
            raise HTTPException(413, f"too many files: at most {lim.max_files} per request") from None
        raise HTTPException(400, f"malformed multipart body: {e.message}") from None
    finally:
        if form is not None:
            await form.close()
    if not files:
        raise HTTPException(400, f"no files: send one or more images in multipart field {FIELD!r}")
    return files


class _TooLarge(Exception):
    pass


class _TooSlow(Exception):
    pass


def _scan(scanner, files: list[tuple[str, bytes]], full: bool) -> list[dict]:
    # Bytes, never paths: a client's file name only labels its record.
    results = scanner.scan([data for _, data in files], names=[name for name, _ in files])
    return [r.to_dict(full=full) for r in results]


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
