"""The provenance store: one SQLite file recording every stamp.

Each record: an integer id (carried in the watermark payload), the image's sha256, its
perceptual hash, the signed C2PA manifest bytes, the generator (name, family, checkpoint
sha256), the watermark backend, the output path, and the time.

Concurrency: WAL journal and a busy timeout, and a record id is allocated by SQLite's
``INTEGER PRIMARY KEY`` inside a transaction, so concurrent writers (processes or threads)
never share an id or corrupt the file; one connection per thread.

Lookup paths, in the order ``verify`` uses them: by record id (from the watermark; the
32-bit payload carries a short id, resolved among candidates by perceptual hash), by
sha256 (exact bytes), by perceptual-hash nearest match (within a distance threshold).

**Issuer.** Record ids are local to a store, so a watermark payload names its issuer as
well (see ``payload.py``): each store draws a random 128-bit issuer seed when it is created
and its issuer id is ``sha256("genvis-trust issuer v2" + seed)`` cut to the payload's issuer
bits (11 for p64, 5 for p32). The seed is per store, not per signing key, because two
stores signed with the same key number their records independently: a key-derived id
would credit one store's record 2 to the other's. The first signer's certificate
fingerprint is kept beside it (``issuer_signer_sha256``) to say who the issuer is.
:meth:`ProvenanceStore.resolve_payload` claims a payload only when its issuer matches.
Stores of schema 1 are upgraded in place (new columns, a fresh seed); their records keep
payload version 1, which names no issuer, so they are claimed only when the perceptual hash
agrees too.

>>> import tempfile, os
>>> s = ProvenanceStore(os.path.join(tempfile.mkdtemp(), "p.db"))
>>> rid = s.reserve_id()
>>> s.complete(rid, sha256="ab", phash="00ff00ff00ff00ff", backend="dwtDctSvd")
>>> s.get(rid).sha256
'ab'
"""

from __future__ import annotations

import os
import secrets
import sqlite3
import threading
import time
import weakref
from dataclasses import asdict, dataclass
from pathlib import Path

from .payload import CODECS, issuer_id
from .phash import hamming

__all__ = ["DEFAULT_PHASH_THRESHOLD", "ProvenanceStore", "StoreError", "StoreRecord"]

SCHEMA_VERSION = 2
#: pHash distance (of 64 bits) accepted as "the same picture"; measured in the tests:
#: JPEG 80 and a 0.5x resize stay within ~6, different photos are above 20.
DEFAULT_PHASH_THRESHOLD = 10

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS records (
    id INTEGER PRIMARY KEY,
    created REAL NOT NULL,
    state TEXT NOT NULL DEFAULT 'reserved',
    sha256 TEXT,
    phash TEXT,
    manifest BLOB,
    backend TEXT,
    payload_bits TEXT,
    short_id INTEGER,
    generator TEXT,
    family TEXT,
    checkpoint_sha256 TEXT,
    path TEXT,
    width INTEGER,
    height INTEGER
);
CREATE INDEX IF NOT EXISTS records_sha ON records(sha256);
CREATE INDEX IF NOT EXISTS records_short ON records(short_id);
"""


class StoreError(RuntimeError):
    """The store file cannot be opened, or is of an unknown schema."""


@dataclass
class StoreRecord:
    id: int
    created: float
    state: str
    sha256: str | None
    phash: str | None
    backend: str | None
    payload_bits: str | None
    short_id: int | None
    generator: str | None
    family: str | None
    checkpoint_sha256: str | None
    path: str | None
    width: int | None
    height: int | None
    manifest: bytes | None = None
    source_type: str | None = None  # IPTC digital source type (short name) recorded at stamp time
    payload_version: int | None = None  # None: a schema-1 record, payload version 1
    issuer_id: int | None = None

    def to_dict(self, manifest: bool = False) -> dict:
        d = asdict(self)
        m = d.pop("manifest")
        d["manifest_bytes"] = len(m) if m else 0
        if manifest and m:
            d["manifest"] = m.hex()
        return d


_COLS = [f for f in StoreRecord.__dataclass_fields__]


_OPEN_STORES: weakref.WeakSet[ProvenanceStore] = weakref.WeakSet()


def close_open_stores() -> None:
    """Close every store of this process that is still open (the CLI calls it at exit, so no
    SQLite connection waits for the garbage collector)."""
    for st in list(_OPEN_STORES):
        st.close()


def _close_connections(opened: list[sqlite3.Connection], lock: threading.Lock) -> None:
    with lock:
        cons = list(opened)
        opened.clear()
    for con in cons:
        con.close()


class ProvenanceStore:
    """A SQLite provenance store at ``path`` (created on first use)."""

    def __init__(self, path: str | os.PathLike, timeout_s: float = 30.0):
        self.path = Path(path)
        self.timeout_s = timeout_s
        self._local = threading.local()
        self._opened: list[sqlite3.Connection] = []  # every thread's connection, so close() reaches them all
        self._opened_lock = threading.Lock()
        _OPEN_STORES.add(self)
        # a store dropped without close() (or alive at exit) still closes its connections, so
        # SQLite checkpoints the WAL and removes -wal/-shm; a connection left to the garbage
        # collector is never closed when the CLI freezes the heap at exit
        self._finalizer = weakref.finalize(self, _close_connections, self._opened, self._opened_lock)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        con = self._con()
        with con:
            con.executescript(_SCHEMA)
            row = con.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            if row is None:
                con.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            elif int(row[0]) not in (1, SCHEMA_VERSION):
                raise StoreError(f"{self.path}: schema version {row[0]}, this code reads {SCHEMA_VERSION}")
        _upgrade_and_seed(con)

    def _con(self) -> sqlite3.Connection:
        con = getattr(self._local, "con", None)
        if con is None:
            try:
                # each connection is used by the thread that opened it; another thread only closes it
                con = sqlite3.connect(self.path, timeout=self.timeout_s, isolation_level=None, check_same_thread=False)
                with self._opened_lock:
                    self._opened.append(con)
                con.execute(f"PRAGMA busy_timeout={int(self.timeout_s * 1000)}")
                con.execute("PRAGMA journal_mode=WAL")
                con.execute("PRAGMA synchronous=NORMAL")
            except sqlite3.DatabaseError as e:
                raise StoreError(f"{self.path}: cannot open the provenance store ({e})") from None
            self._local.con = con
        return con

    def close(self) -> None:
        """Close the connection of every thread that used the store (worker threads open their
        own), so no SQLite handle is left for the garbage collector and the WAL is checkpointed
        now. A later call on any thread opens a new connection."""
        self._local = threading.local()
        _close_connections(self._opened, self._opened_lock)

    # ------------------------------------------------------------------ writes

    def reserve_id(self) -> int:
        """Allocate a record id before stamping (the id goes into the watermark)."""
        con = self._con()
        con.execute("BEGIN IMMEDIATE")
        try:
            cur = con.execute("INSERT INTO records (created, state) VALUES (?, 'reserved')", (time.time(),))
            rid = int(cur.lastrowid)
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        return rid

    def complete(self, record_id: int, **fields) -> None:
        """Fill a reserved record once the stamped image and its manifest exist."""
        unknown = set(fields) - set(_COLS)
        if unknown:
            raise StoreError(f"unknown record fields {sorted(unknown)}")
        fields["state"] = "complete"
        sets = ", ".join(f"{k}=?" for k in fields)
        con = self._con()
        con.execute("BEGIN IMMEDIATE")
        try:
            con.execute(f"UPDATE records SET {sets} WHERE id=?", (*fields.values(), record_id))
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise

    # ------------------------------------------------------------------ reads

    def _rows(self, where: str, args: tuple) -> list[StoreRecord]:
        cur = self._con().execute(f"SELECT {', '.join(_COLS)} FROM records WHERE {where}", args)
        return [StoreRecord(*row) for row in cur.fetchall()]

    def get(self, record_id: int) -> StoreRecord | None:
        rows = self._rows("id=? AND state='complete'", (int(record_id),))
        return rows[0] if rows else None

    def by_short_id(self, short_id: int) -> list[StoreRecord]:
        return self._rows("short_id=? AND state='complete'", (int(short_id),))

    def by_sha256(self, sha256: str) -> list[StoreRecord]:
        return self._rows("sha256=? AND state='complete'", (sha256,))

    def nearest_phash(self, phash: str, max_distance: int = DEFAULT_PHASH_THRESHOLD) -> tuple[StoreRecord, int] | None:
        """The closest record by perceptual hash within ``max_distance`` bits, if any.

        A linear scan in SQL order; fine up to ~10^6 records (hashes are 16 hex digits).
        """
        best: tuple[int, int] | None = None
        for rid, h in self._con().execute("SELECT id, phash FROM records WHERE state='complete' AND phash IS NOT NULL"):
            d = hamming(h, phash)
            if d <= max_distance and (best is None or d < best[1]):
                best = (rid, d)
        if best is None:
            return None
        return self.get(best[0]), best[1]  # type: ignore[return-value]

    # ------------------------------------------------------------------ issuer

    def _meta(self, key: str) -> str | None:
        row = self._con().execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return row[0] if row else None

    def issuer_id(self, bits: int) -> int:
        """This store's issuer id at a payload's width (11 bits for p64, 5 for p32)."""
        return issuer_id(bytes.fromhex(self._meta("issuer_seed") or ""), bits)

    def issuer_info(self) -> dict:
        """The issuer ids at every profile's width and the first signer's fingerprint."""
        return {"p64": self.issuer_id(CODECS["p64"].issuer_bits), "p32": self.issuer_id(CODECS["p32"].issuer_bits),
                "signer_sha256": self._meta("issuer_signer_sha256")}

    def bind_signer(self, signer_sha256: str) -> None:
        """Remember the first signing certificate that stamped into this store."""
        con = self._con()
        with con:
            con.execute("INSERT OR IGNORE INTO meta VALUES ('issuer_signer_sha256', ?)", (signer_sha256,))

    def resolve_payload(self, payload: dict, backend: str, phash: str | None,
                        max_phash_distance: int = DEFAULT_PHASH_THRESHOLD) -> dict:
        """The record a decoded watermark payload names, if this store issued it.

        Returns ``{"found": True, "record": StoreRecord, ...}`` or ``{"found": False,
        "foreign": bool, "note": ...}``. A version-2 payload is claimed only when its issuer
        is this store's; a wrapped short id is resolved among this store's records of that
        backend by perceptual hash. A version-1 payload names no issuer, so it is claimed
        only when the record's perceptual hash is within ``max_phash_distance`` as well.
        """
        codec = CODECS["p64"] if int(payload.get("n_bits") or 64) == 64 else CODECS["p32"]
        rid, version = int(payload["record_id"]), int(payload.get("version") or 1)
        if version >= 2:
            mine = self.issuer_id(codec.issuer_bits)
            if int(payload["issuer_id"]) != mine:
                return {"found": False, "foreign": True,
                        "note": f"watermark from issuer {int(payload['issuer_id']):#x}, not this store's ({mine:#x})"}
            cands = [r for r in self.by_short_id(rid) if (r.payload_version or 1) >= 2]
        else:
            cands = [r for r in ([self.get(rid)] if codec.id_bits >= 28 else self.by_short_id(rid))
                     if r and (r.payload_version or 1) == 1]
        # a short id is only meaningful within one backend's payload width
        cands = [r for r in cands if r.backend == backend] if version >= 2 else \
            ([r for r in cands if r.backend == backend] or cands)
        dist = {r.id: hamming(r.phash, phash) if (r.phash and phash) else None for r in cands}
        cands.sort(key=lambda r: 99 if dist[r.id] is None else dist[r.id])
        if version < 2:
            cands = [r for r in cands if dist[r.id] is not None and dist[r.id] <= max_phash_distance]
        if not cands:
            why = ("a version-1 payload names no issuer and no record of that number looks alike"
                   if version < 2 else "this store holds no such record")
            return {"found": False, "foreign": False, "note": f"payload names record {rid}: {why}"}
        r = cands[0]
        return {"found": True, "record": r, "phash_distance": dist[r.id], "candidates": len(cands)}

    def count(self) -> int:
        return int(self._con().execute("SELECT COUNT(*) FROM records WHERE state='complete'").fetchone()[0])


_V2_COLUMNS = {"source_type": "TEXT", "payload_version": "INTEGER", "issuer_id": "INTEGER"}


def _upgrade_and_seed(con: sqlite3.Connection) -> None:
    """Bring a schema-1 store to schema 2 and give every store its issuer seed (once)."""
    have = {row[1] for row in con.execute("PRAGMA table_info(records)")}
    seeded = con.execute("SELECT 1 FROM meta WHERE key='issuer_seed'").fetchone()
    if seeded and set(_V2_COLUMNS) <= have:
        return  # nothing to write: a store on read-only media still opens for verify
    con.execute("BEGIN IMMEDIATE")
    try:
        have = {row[1] for row in con.execute("PRAGMA table_info(records)")}
        for name, typ in _V2_COLUMNS.items():
            if name not in have:
                con.execute(f"ALTER TABLE records ADD COLUMN {name} {typ}")
        con.execute("UPDATE meta SET value=? WHERE key='schema_version'", (str(SCHEMA_VERSION),))
        con.execute("INSERT OR IGNORE INTO meta VALUES ('issuer_seed', ?)", (secrets.token_hex(16),))
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
