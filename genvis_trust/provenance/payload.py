"""The watermark payload: who stamped it, what it is, which record, protected by a BCH code.

A payload is a fixed-length bit string. Two profiles, one per backend capacity; the code
protects ``k = 2 + data`` message bits (2 version bits, then the data bits):

==========  =====  =============================  =========  ==============================  ======
profile     bits   code                           data bits  version 2 data (MSB first)      radius
==========  =====  =============================  =========  ==============================  ======
``p64``     64     BCH(63,30,t=6) + parity bit    28         flag 1 | issuer 11 | record 16  3
``p32``     32     BCH(63,45,t=3) shortened to 32 12         flag 1 | issuer 5  | record 6   0
==========  =====  =============================  =========  ==============================  ======

- **flag**: 1 when the stamped content is generative (IPTC ``trainedAlgorithmicMedia`` or a
  composite with it), 0 for captures and other source types, so a mark says what it marks
  even when the store that issued it is not at hand;
- **issuer**: the stamping store's issuer id (:func:`issuer_id`; see ``store.py``): a store
  claims a payload only when the issuer matches its own;
- **record**: the store record id modulo ``2**record_bits`` (a *short id*; the store
  resolves wrapped ids among its own records by perceptual hash).

Version 1 payloads (data = the record id alone, no issuer) are still read: ``p64`` accepts
them at radius 2, ``p32`` only when asked (``decode(bits, legacy=True)``), see below.

**False-accept rate.** A decoder that accepts any word within Hamming distance ``r`` of
one of ``A`` accepted codewords accepts a uniformly random ``n``-bit word with probability
``A * V(n, r) / 2**n`` (the radius-``r`` spheres are disjoint because ``r`` is below half
the minimum distance; ``V`` is the Hamming-ball volume). The issuer and flag bits come out
of the 28 (12) data bits, so ``A = 2**data_bits`` per accepted version, as before: naming
the issuer costs no false accepts. Reading legacy version-1 words adds their own term:

- ``p64``: ``2**28 * (V(64, 3) + V(64, 2)) / 2**64`` = 6.7e-7 (v2 at radius 3, v1 at 2;
  v2 alone would be 6.4e-7), and 3 flipped bits corrected;
- ``p32`` at radius 0: ``2**12 / 2**32`` = 9.5e-7. 32 bits cannot hold a useful id, correct
  errors *and* stay under 1e-6 (radius 1 would be 3.1e-5), so the 32-bit profile detects
  but does not correct by default, and reading its v1 words as well would double the rate
  (1.9e-6): they are decoded and reported, but accepted only with ``legacy=True``.
  ``decode(..., radius=1..3)`` is available with its stated, higher rate.

The decoder always reports the distance to the nearest codeword it found (up to the
code's full capability ``t``), so the detector can report a p-value for that distance.

>>> codec = get_codec("p64")
>>> bits = codec.encode(12345, issuer=1234, generative=True)
>>> d = codec.decode(bits); len(bits), d.version, d.issuer_id, d.record_id, d.generative
(64, 2, 1234, 12345, True)
>>> noisy = bits.copy(); noisy[[3, 17, 40]] ^= 1
>>> d = codec.decode(noisy); (d.valid, d.record_id, d.distance)
(True, 12345, 3)
>>> f"{codec.false_accept_rate():.1e}"
'6.7e-07'
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from functools import cache, lru_cache

import numpy as np

__all__ = [
    "CODECS",
    "DecodedPayload",
    "PayloadCodec",
    "PayloadError",
    "get_codec",
    "hamming_ball",
    "issuer_id",
]

PAYLOAD_VERSION = 2
LEGACY_VERSION = 1  # data = record id only; no issuer, no flag


class PayloadError(ValueError):
    """A record id that does not fit, a bit string of the wrong length."""


def hamming_ball(n: int, r: int) -> int:
    """Number of ``n``-bit words within Hamming distance ``r`` of a given word."""
    return sum(math.comb(n, i) for i in range(r + 1))


# --------------------------------------------------------------------------- GF(2^6) + BCH

_M = 6
_N = (1 << _M) - 1  # 63
_PRIM = 0b1000011  # x^6 + x + 1, primitive


@lru_cache(maxsize=1)
def _gf_tables() -> tuple[list[int], list[int]]:
    exp, log = [0] * (2 * _N), [0] * (_N + 1)
    x = 1
    for i in range(_N):
        exp[i] = x
        log[x] = i
        x <<= 1
        if x & (1 << _M):
            x ^= _PRIM
    for i in range(_N, 2 * _N):
        exp[i] = exp[i - _N]
    return exp, log


def _gf_mul(a: int, b: int) -> int:
    if a == 0 or b == 0:
        return 0
    exp, log = _gf_tables()
    return exp[log[a] + log[b]]


def _gf_inv(a: int) -> int:
    exp, log = _gf_tables()
    return exp[(_N - log[a]) % _N]


def _poly_mul_gf2(a: int, b: int) -> int:
    """Multiply binary polynomials held as ints (bit i = coefficient of x^i)."""
    out = 0
    while b:
        if b & 1:
            out ^= a
        a <<= 1
        b >>= 1
    return out


@cache
def _generator(t: int) -> int:
    """BCH generator: product of the distinct minimal polynomials of alpha^1..alpha^2t."""
    exp, _ = _gf_tables()
    g, seen = 1, set()
    for i in range(1, 2 * t + 1):
        coset, j = [], i
        while j not in coset:
            coset.append(j)
            j = (j * 2) % _N
        key = min(coset)
        if key in seen:
            continue
        seen.add(key)
        # minimal polynomial = prod (x - alpha^j) over the cyclotomic coset, coefficients in GF(2)
        poly = [1]  # GF(2^m) coefficients, lowest degree first
        for j in coset:
            root = exp[j]
            nxt = [0] * (len(poly) + 1)
            for k, c in enumerate(poly):
                nxt[k + 1] ^= c
                nxt[k] ^= _gf_mul(c, root)
            poly = nxt
        assert all(c in (0, 1) for c in poly)
        g = _poly_mul_gf2(g, sum(c << k for k, c in enumerate(poly)))
    return g


def _poly_mod_gf2(a: int, g: int) -> int:
    dg = g.bit_length() - 1
    while a.bit_length() - 1 >= dg:
        a ^= g << (a.bit_length() - 1 - dg)
    return a


def _bch_decode(word: int, t: int) -> tuple[int, int] | None:
    """Correct up to ``t`` errors in a 63-bit word; return (corrected word, errors) or None."""
    exp, log = _gf_tables()
    synd = []
    for j in range(1, 2 * t + 1):
        s, w, i = 0, word, 0
        while w:
            if w & 1:
                s ^= exp[(i * j) % _N]
            w >>= 1
            i += 1
        synd.append(s)
    if not any(synd):
        return word, 0
    # Berlekamp-Massey over GF(2^6)
    c, b = [1], [1]
    L, m, bb = 0, 1, 1
    for n_ in range(2 * t):
        d = synd[n_]
        for i in range(1, L + 1):
            if i < len(c):
                d ^= _gf_mul(c[i], synd[n_ - i])
        if d == 0:
            m += 1
            continue
        coef = _gf_mul(d, _gf_inv(bb))
        tmp = list(c)
        shifted = [0] * m + [_gf_mul(coef, x) for x in b]
        if len(shifted) > len(c):
            c = c + [0] * (len(shifted) - len(c))
        for i, x in enumerate(shifted):
            c[i] ^= x
        if 2 * L <= n_:
            L, b, bb, m = n_ + 1 - L, tmp, d, 1
        else:
            m += 1
    if L > t:
        return None
    # Chien search: error at position p when Lambda(alpha^-p) == 0
    positions = []
    for p in range(_N):
        inv = exp[(_N - p) % _N]
        acc, xp = 0, 1
        for coef in c:
            acc ^= _gf_mul(coef, xp)
            xp = _gf_mul(xp, inv)
        if acc == 0:
            positions.append(p)
    if len(positions) != L:
        return None  # more errors than the code can locate
    for p in positions:
        word ^= 1 << p
    return word, L


# --------------------------------------------------------------------------- codec


def issuer_id(seed: bytes, bits: int) -> int:
    """An issuer id of ``bits`` bits from ``seed`` (the store's issuer seed, see ``store.py``).

    >>> issuer_id(b"example", 11) == issuer_id(b"example", 11) < 2**11
    True
    """
    import hashlib

    digest = hashlib.sha256(b"genvis-trust issuer v2\0" + seed).digest()
    return int.from_bytes(digest[:8], "big") >> (64 - bits)


@dataclass
class DecodedPayload:
    """What a bit string decodes to. ``valid`` only when within the radius of an accepted
    codeword. ``record_id`` is the record field as carried (a short id when it wrapped);
    ``issuer_id`` and ``generative`` are ``None`` for legacy version-1 payloads."""

    valid: bool
    record_id: int | None
    version: int | None
    distance: int | None  # bit errors to the nearest codeword found (None: beyond capability)
    radius: int
    n_bits: int
    false_accept_rate: float  # of this decoder configuration, for random bits
    p_value: float | None  # P(a random word lies this close to an accepted codeword)
    reason: str = ""
    issuer_id: int | None = None
    generative: bool | None = None
    record_bits: int | None = None  # width of the record field: ids wrap modulo 2**record_bits

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class PayloadCodec:
    """Systematic BCH code over GF(2^6), optionally shortened and/or extended by parity."""

    name: str
    n_bits: int
    t: int  # correction capability of the underlying BCH(63, k) code
    version_bits: int
    id_bits: int  # data bits after the version: flag + issuer + record (v2), record (v1)
    issuer_bits: int
    default_radius: int
    extended: bool  # one overall parity bit appended
    legacy_by_default: bool  # accept version-1 words without being asked

    @property
    def parity_bits(self) -> int:
        return _generator(self.t).bit_length() - 1

    @property
    def k(self) -> int:
        return self.version_bits + self.id_bits

    @property
    def record_bits(self) -> int:
        return self.id_bits - 1 - self.issuer_bits

    @property
    def short_id_modulus(self) -> int:
        """Record ids wrap modulo this in a version-2 payload."""
        return 1 << self.record_bits

    def __post_init__(self):
        base_len = self.n_bits - (1 if self.extended else 0)
        if base_len > _N or self.k + self.parity_bits != base_len:
            raise ValueError(
                f"{self.name}: k={self.k} + parity={self.parity_bits} != {base_len} code bits"
            )
        if 2 * self.default_radius >= self.min_distance:
            raise ValueError(f"{self.name}: radius {self.default_radius} too large for d={self.min_distance}")

    @property
    def min_distance(self) -> int:
        return 2 * self.t + 1 + (1 if self.extended else 0)

    @staticmethod
    def legacy_radius(radius: int) -> int:
        # one bit tighter for v1 words, so reading them keeps p64 within its 1e-6 budget
        return max(0, radius - 1)

    def false_accept_rate(self, radius: int | None = None, legacy: bool | None = None) -> float:
        """P(a uniformly random word is accepted), exact for radius < d/2: version-2 words
        within ``radius`` plus, when legacy words are accepted, v1 words within
        :meth:`legacy_radius`."""
        r = self.default_radius if radius is None else radius
        legacy = self.legacy_by_default if legacy is None else legacy
        balls = hamming_ball(self.n_bits, r)
        if legacy:
            balls += hamming_ball(self.n_bits, self.legacy_radius(r))
        return (1 << self.id_bits) * balls / 2.0**self.n_bits

    def encode(self, record_id: int, version: int = PAYLOAD_VERSION, *, issuer: int = 0,
               generative: bool = True) -> np.ndarray:
        """Bits (uint8 array of 0/1, most significant first) for ``record_id``.

        Version 2 carries ``record_id mod 2**record_bits`` (a *short id* once ids wrap),
        the ``issuer`` id and the ``generative`` flag. Version 1 (legacy, for reading old
        stamps in tests) carries the record id alone.
        """
        if record_id < 0:
            raise PayloadError(f"record id must be >= 0, got {record_id}")
        if version == LEGACY_VERSION:
            if self.id_bits >= 28 and record_id >= (1 << self.id_bits):
                raise PayloadError(f"record id {record_id} does not fit in {self.id_bits} bits")
            data = record_id % (1 << self.id_bits)
        elif version == PAYLOAD_VERSION:
            if not 0 <= issuer < (1 << self.issuer_bits):
                raise PayloadError(f"issuer id {issuer} does not fit in {self.issuer_bits} bits")
            data = (int(bool(generative)) << (self.id_bits - 1)) | (issuer << self.record_bits)
            data |= record_id % self.short_id_modulus
        else:
            raise PayloadError(f"cannot encode payload version {version}; this code writes {PAYLOAD_VERSION}")
        msg = (version << self.id_bits) | data
        g = _generator(self.t)
        shifted = msg << self.parity_bits
        code = shifted | _poly_mod_gf2(shifted, g)
        base_len = self.n_bits - (1 if self.extended else 0)
        bits = [(code >> (base_len - 1 - i)) & 1 for i in range(base_len)]
        if self.extended:
            bits.append(sum(bits) & 1)
        return np.array(bits, dtype=np.uint8)

    def decode(self, bits, radius: int | None = None, legacy: bool | None = None) -> DecodedPayload:
        """Decode a bit string: accept a version-2 codeword within ``radius`` errors and,
        when ``legacy`` (default: the profile's ``legacy_by_default``), a version-1 codeword
        within :meth:`legacy_radius`."""
        r = self.default_radius if radius is None else int(radius)
        legacy = self.legacy_by_default if legacy is None else bool(legacy)
        if 2 * r >= self.min_distance:
            raise PayloadError(f"radius {r} must be below half the minimum distance {self.min_distance}")
        arr = np.asarray(bits).astype(np.uint8).ravel()
        if arr.size != self.n_bits or arr.max(initial=0) > 1:
            raise PayloadError(f"{self.name} expects {self.n_bits} bits of 0/1, got {arr.size}")
        far = self.false_accept_rate(r, legacy)
        base_len = self.n_bits - (1 if self.extended else 0)
        word = 0
        for b in arr[:base_len]:
            word = (word << 1) | int(b)
        res = _bch_decode(word, self.t)
        common = dict(radius=r, n_bits=self.n_bits, false_accept_rate=far)
        if res is None or res[0] >> base_len:  # corrected into the shortened (zero) region
            return DecodedPayload(False, None, None, None, p_value=None,
                                  reason="no codeword within the code's capability", **common)
        fixed, errors = res
        if self.extended:
            parity = (bin(fixed).count("1") & 1)
            errors += int(parity != int(arr[-1]))
        msg = fixed >> self.parity_bits
        version, data = msg >> self.id_bits, msg & ((1 << self.id_bits) - 1)
        p = min(1.0, self.false_accept_rate(errors, legacy)) if 2 * errors < self.min_distance else 1.0
        if version == PAYLOAD_VERSION:
            fields = dict(issuer_id=(data >> self.record_bits) & ((1 << self.issuer_bits) - 1),
                          generative=bool(data >> (self.id_bits - 1)), record_bits=self.record_bits)
            rid, limit = data % self.short_id_modulus, r
        elif version == LEGACY_VERSION:
            fields = dict(record_bits=self.id_bits)
            rid, limit = data, self.legacy_radius(r)
            if not legacy:
                return DecodedPayload(False, int(rid), int(version), errors, p_value=p, **fields,
                                      reason=f"legacy version-1 payload: not accepted by {self.name} "
                                             "unless asked (legacy=True)", **common)
        else:
            return DecodedPayload(False, None, int(version), errors, p_value=None,
                                  reason=f"unknown payload version {version}", **common)
        if errors > limit:
            return DecodedPayload(False, None, int(version), errors, p_value=p, **fields,
                                  reason=f"{errors} bit errors exceed the decode radius {limit}", **common)
        return DecodedPayload(True, int(rid), int(version), errors, p_value=p, **fields, **common)


CODECS: dict[str, PayloadCodec] = {
    "p64": PayloadCodec("p64", 64, t=6, version_bits=2, id_bits=28, issuer_bits=11, default_radius=3,
                        extended=True, legacy_by_default=True),
    "p32": PayloadCodec("p32", 32, t=3, version_bits=2, id_bits=12, issuer_bits=5, default_radius=0,
                        extended=False, legacy_by_default=False),
}


def get_codec(name_or_bits: str | int) -> PayloadCodec:
    """A codec by profile name (``p64``, ``p32``) or by payload length (64, 32)."""
    for c in CODECS.values():
        if name_or_bits in (c.name, c.n_bits):
            return c
    raise PayloadError(f"unknown payload profile {name_or_bits!r}; choose from {sorted(CODECS)}")
