"""Moved to :mod:`genvis_trust.ray_engine`, beside :mod:`genvis_trust.audit` whose records it
writes (scoring sits below scan and audit and imports neither). Kept as an alias because
this path was documented."""

from genvis_trust.ray_engine import run_audit_ray  # noqa: F401

__all__ = ["run_audit_ray"]
