"""`genvis-trust serve`: the scan service over HTTP (FastAPI + uvicorn, the `serve` extra).

FastAPI and uvicorn are imported when the command runs, so the rest of the CLI works
without the extra. Exit codes: 0 stopped cleanly (Ctrl+C); 2 usage error (bad option,
unknown detector, extra not installed); 3 the server could not start (uvicorn's code,
e.g. the port is taken).
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape

from .common import EXIT_USAGE, err, fail, friendly_errors

TOKEN_ENV = "GENVIS_TRUST_TOKEN"
_LOOPBACK = ("127.0.0.1", "::1", "localhost")


def serve_cmd(
    host: str = typer.Option("127.0.0.1", help="Address to listen on. The default is this machine only; 0.0.0.0 listens on every interface (set a token then)."),
    port: int = typer.Option(8000, help="TCP port."),
    detector: str = typer.Option("default", help="Detector: a bundled or installed name, or an artifact folder; loaded once, at start-up."),
    token: str | None = typer.Option(
        None, envvar=TOKEN_ENV, show_envvar=True,
        help=f"Require `Authorization: Bearer TOKEN` on /scan. Prefer the {TOKEN_ENV} variable: "
             "a command-line value shows in `ps`. Never logged.",
    ),
    max_upload_mb: float = typer.Option(20.0, help="Largest request body in MiB (all files plus multipart framing); larger gets 413."),
    max_files: int = typer.Option(32, help="Most files per request; more gets 413."),
    max_megapixels: float = typer.Option(25.0, help="Largest image in megapixels; a larger file gets an error record with code too_large."),
    max_concurrency: int = typer.Option(4, help="Requests scanned at once, each in a worker thread; more wait (see --queue-timeout)."),
    queue_timeout: float = typer.Option(10.0, help="Seconds a request waits for a free scan slot (taken once its upload is in) before 503 with Retry-After."),
    upload_timeout: float = typer.Option(60.0, help="Seconds a client has to send its whole request body; slower gets 408."),
    min_upload_rate: float = typer.Option(16.0, help="Slowest accepted upload in KiB/s, on average after the first 2 s; slower gets 408 at once, so slow clients cannot hold the service. 0 turns it off."),
    store: Path | None = typer.Option(None, exists=True, dir_okay=False, help="Provenance store (SQLite, e.g. made by `stamp`) to look records up in."),
    trust_anchors: Path | None = typer.Option(None, exists=True, dir_okay=False, help="PEM file of trusted C2PA root certificates."),
    backends: str | None = typer.Option(None, help="Watermark backends to read, comma-separated (default dwtDctSvd,dwtDct)."),
    no_provenance: bool = typer.Option(False, "--no-provenance", help="Detector only: skip C2PA, metadata and watermark checks."),
    device: str = typer.Option("auto", help="auto (CUDA when present), cpu or cuda."),
    log_level: str = typer.Option("info", help="uvicorn log level: critical, error, warning, info, debug."),
):
    """Serve scan over HTTP: upload images, get the same JSON records as `scan --json`.

    Endpoints: GET /health (detector name and sha256, versions, limits; no token needed);
    POST /scan with one or more images in the multipart field `files` returns
    {"schema_version": "1.0", "results": ...} with one record per file, in upload order;
    add ?full=true for each image's full provenance report. API docs: GET /docs (works
    offline: its assets are served by the service itself).

    Try it: genvis-trust serve, then in another shell
    curl -F files=@photo.jpg -F files=@other.png http://127.0.0.1:8000/scan

    Status codes: 200 scanned (a file that cannot be read, or is over the pixel limit, is a
    record with an error code, not a failed request); 400 no files or a malformed body;
    401 missing or wrong token; 408 upload slower than --min-upload-rate or longer than
    --upload-timeout; 413 body or file count over the limits; 415 not multipart; 503 busy
    (retry after the Retry-After seconds).
    Errors are JSON {"detail": "..."}.
    """
    missing = _missing_serve_extra()
    if missing:
        fail(f'{missing} is not installed; the service needs the serve extra: pip install "genvis-trust[serve]"', EXIT_USAGE)
    import uvicorn

    from genvis_trust.artifacts import ArtifactError
    from genvis_trust.detectors.detector import load_detector
    from genvis_trust.service import create_app

    if min_upload_rate < 0 or upload_timeout <= 0:
        fail("--min-upload-rate must be 0 or more and --upload-timeout positive", EXIT_USAGE)
    for name, value in (("--max-upload-mb", max_upload_mb), ("--max-files", max_files),
                        ("--max-megapixels", max_megapixels), ("--max-concurrency", max_concurrency)):
        if value <= 0:
            fail(f"{name} must be positive, got {value}", EXIT_USAGE)
    if token is not None and not token.strip():
        fail(f"the token is empty (check --token / {TOKEN_ENV})", EXIT_USAGE)
    if host not in _LOOPBACK and token is None:
        err.print(f"[yellow]warning:[/] listening on {escape(host)} without a token: anyone who can reach "
                  f"it can scan (set {TOKEN_ENV})", highlight=False)

    # Load the weights here, not in the server, so a bad --detector is one clear line.
    with friendly_errors(ArtifactError, FileNotFoundError, ValueError):
        det = load_detector(detector, device=device)
        kwargs = dict(device=device, provenance=not no_provenance, store=store, trust_anchors=trust_anchors)
        if backends:
            kwargs["watermark_backends"] = tuple(b.strip() for b in backends.split(",") if b.strip())
        app = create_app(
            det,
            max_upload_bytes=int(max_upload_mb * 1024 * 1024),
            max_files=max_files,
            max_pixels=int(max_megapixels * 1_000_000),
            max_concurrency=max_concurrency,
            queue_timeout_s=queue_timeout,
            upload_timeout_s=upload_timeout,
            min_upload_rate=min_upload_rate * 1024,
            token=token,
            **kwargs,
        )
    auth = "bearer token required on /scan" if token else "no token (open)"
    err.print(escape(f"detector {det.name} (sha256 {det.sha256 or 'unsaved'}) on {det.device}; {auth}; "
                     f"serving on http://{host}:{port} (Ctrl+C stops)"), highlight=False, soft_wrap=True)
    uvicorn.run(app, host=host, port=port, log_level=log_level, timeout_graceful_shutdown=30)


def _missing_serve_extra() -> str | None:
    from importlib.util import find_spec

    for module, package in (("fastapi", "fastapi"), ("uvicorn", "uvicorn"), ("fastapi_offline", "fastapi-offline")):
        if find_spec(module) is None:
            return package
    if find_spec("python_multipart") is None and find_spec("multipart") is None:  # new and old names
        return "python-multipart"
    return None
