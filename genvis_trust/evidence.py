"""One ``Evidence`` type, from the signal that found it to the verdict, JSON and HTML.

A signal (C2PA, watermark, known generator, metadata, provenance store, detector) gives an
:class:`Evidence`: its kind, strength, a one-line summary, what it indicates, and JSON
details. The facts a verdict rests on are typed attributes too (the C2PA validation state,
the store record and how it was found), so :func:`genvis_trust.scan.fuse` decides on
attributes, never on keys of ``details``; ``details`` is what JSON readers see, and
:meth:`Evidence.from_dict` reads a record back (an audit's ``results.jsonl`` for its report).

>>> e = Evidence("c2pa", "cryptographic", "C2PA manifest Valid", "generated", {"state": "Valid"}, c2pa_state="Valid")
>>> e.validated, e.found, e.to_dict()["details"]
(True, True, {'state': 'Valid'})
>>> Evidence.from_dict(e.to_dict()) == e
True
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["INDICATES", "KINDS", "STRENGTHS", "STRENGTH_ORDER", "Evidence", "StoreMatch"]

KINDS = ("c2pa", "watermark", "known_generator", "metadata", "store", "detector", "provenance", "region", "face", "video")
STRENGTHS = ("cryptographic", "statistical", "learned", "declared")
STRENGTH_ORDER = {"cryptographic": 0, "statistical": 1, "declared": 2, "learned": 3}  # strongest first
# "none": looked for and not found
INDICATES = ("generated", "edited", "authentic_provenance", "tampered", "none")
GENERATIVE = ("generated", "edited")


@dataclass(frozen=True)
class StoreMatch:
    """A provenance-store record and the path that found it. A perceptual-hash match is a
    near-duplicate of the stamped item (``derivative``): weaker than any mark."""

    record_id: int
    path: str  # c2pa | sha256 | watermark | perceptual_hash
    source_type: str
    phash_distance: int | None = None

    @property
    def derivative(self) -> bool:
        return self.path == "perceptual_hash"

    def details(self) -> dict[str, Any]:
        return {"path": self.path, "record_id": self.record_id, "source_type": self.source_type,
                "derivative": self.derivative, "phash_distance": self.phash_distance}


@dataclass
class Evidence:
    """One signal. ``indicates``: one of :data:`INDICATES`."""

    kind: str  # c2pa | watermark | known_generator | metadata | store | detector | provenance
    strength: str  # cryptographic | statistical | learned | declared
    summary: str
    indicates: str = "none"
    details: dict[str, Any] = field(default_factory=dict)
    # typed facts the verdict rests on (also in ``details``, for JSON readers)
    c2pa_state: str | None = None  # kind c2pa with a manifest: Valid | Trusted | Invalid
    store: StoreMatch | None = None  # kind store: which record, found how

    def __post_init__(self):
        if self.strength not in STRENGTHS:
            raise ValueError(f"evidence strength {self.strength!r} is not one of {STRENGTHS}")
        if self.indicates not in INDICATES:
            raise ValueError(f"evidence indicates {self.indicates!r}, not one of {INDICATES}")
        if self.store is not None and not self.details:
            self.details = self.store.details()

    @property
    def found(self) -> bool:
        """The signal was found (it indicates something)."""
        return self.indicates != "none"

    @property
    def generative(self) -> bool:
        return self.indicates in GENERATIVE

    @property
    def validated(self) -> bool:
        """A C2PA manifest that validates (Valid or Trusted)."""
        return str(self.c2pa_state or "").lower() in ("valid", "trusted")

    @property
    def strength_rank(self) -> int:
        return STRENGTH_ORDER.get(self.strength, 9)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "strength": self.strength, "summary": self.summary,
                "indicates": self.indicates, "details": self.details}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Evidence:
        """Evidence read back from JSON (:meth:`to_dict`), typed facts included."""
        details = dict(d.get("details") or {})
        kind = d["kind"]
        store = None
        if kind == "store" and "record_id" in details:
            store = StoreMatch(details["record_id"], details.get("path") or "", details.get("source_type") or "",
                               details.get("phash_distance"))
        return cls(kind, d["strength"], d.get("summary", ""), d.get("indicates") or "none", details,
                   c2pa_state=details.get("state") if kind == "c2pa" else None, store=store)
