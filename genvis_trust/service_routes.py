"""The scan service's routes and lifespan, at module level (FastAPI, the ``serve`` extra).

Imported by :func:`genvis_trust.service.create_app` only, so importing the service module
never imports FastAPI. Every handler reads its app's typed
:class:`~genvis_trust.service.ServiceState` (``request.app.state.service``); what the
limits mean is documented in :mod:`genvis_trust.service`.
"""

from __future__ import annotations

import json
import secrets
from contextlib import asynccontextmanager

import anyio
from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import ClientDisconnect

from genvis_trust.scan import SCAN_SCHEMA_VERSION
from genvis_trust.service import (
    FIELD,
    ServiceState,
    _health,
    _paced,
    _scan,
    _too_big,
    _TooLarge,
    _TooSlow,
    log,
)

router = APIRouter()
bearer = HTTPBearer(auto_error=False, description="Needed when the service was started with a token.")


def _state(request: Request) -> ServiceState:
    return request.app.state.service


@asynccontextmanager
async def lifespan(app):
    from genvis_trust.scan import Scanner
    from genvis_trust.service import DEFAULT_MAX_VIDEO_S
    from genvis_trust.video import VideoLimits, VideoOptions

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
