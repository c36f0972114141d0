"""What the scan service is made with and keeps: its limits, its per-app state and the
defaults both :mod:`genvis_trust.service` (which makes the app) and
:mod:`genvis_trust.service_routes` (its routes) read. Imports no web framework."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any

__all__ = ["DEFAULT_MAX_FILES", "DEFAULT_MAX_PIXELS", "DEFAULT_MAX_UPLOAD_BYTES", "DEFAULT_MAX_VIDEO_S",
           "DEFAULT_MIN_UPLOAD_RATE", "DEFAULT_UPLOAD_GRACE_S", "FIELD", "Limits", "MiB", "SERVE_EXTRA_HINT",
           "ServiceState", "log"]

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
