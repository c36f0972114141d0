"""Payload codec: round trips, correction radius, rejection, and the stated false-accept rate."""

import numpy as np
import pytest

from genvis_trust.provenance.payload import CODECS, PayloadError, get_codec, hamming_ball


@pytest.mark.parametrize("name", sorted(CODECS))
def test_round_trip_and_correction(name):
    codec = get_codec(name)
    rng = np.random.default_rng(0)
    for rid in [0, 1, codec.short_id_modulus - 1, *rng.integers(0, codec.short_id_modulus, 20).tolist()]:
        bits = codec.encode(rid)
        assert bits.size == codec.n_bits
        d = codec.decode(bits)
        assert d.valid and d.record_id == rid and d.distance == 0
        flips = rng.choice(codec.n_bits, codec.default_radius, replace=False)
        noisy = bits.copy()
        noisy[flips] ^= 1
        d = codec.decode(noisy)
        assert d.valid and d.record_id == rid and d.distance == codec.default_radius


def test_p64_rejects_beyond_radius_but_reports_distance():
    codec = get_codec("p64")
    bits = codec.encode(42)
    noisy = bits.copy()
    noisy[[0, 10, 20, 30, 40]] ^= 1  # 5 errors: within t=6 capability, beyond radius 3
    d = codec.decode(noisy)
    assert not d.valid and d.distance == 5 and "radius" in d.reason


def test_false_accept_rates_meet_target():
    assert get_codec("p64").false_accept_rate() <= 1e-6
    assert get_codec("p32").false_accept_rate() <= 1e-6
    # the formula: accepted codewords x Hamming-ball volume / 2^n
    assert get_codec("p64").false_accept_rate() == 2**28 * hamming_ball(64, 3) / 2**64


def test_false_accept_rate_formula_matches_monte_carlo():
    """At radius 3 the 32-bit codec's rate is large enough to measure: 5.2e-3."""
    codec = get_codec("p32")
    expected = codec.false_accept_rate(3)
    rng = np.random.default_rng(1)
    n = 4000
    accepted = sum(codec.decode(rng.integers(0, 2, 32), radius=3).valid for _ in range(n))
    sd = (n * expected * (1 - expected)) ** 0.5
    assert abs(accepted - n * expected) < 4 * sd + 1, (accepted, n * expected)


def test_bad_inputs():
    codec = get_codec("p64")
    with pytest.raises(PayloadError):
        codec.decode(np.zeros(10, np.uint8))
    with pytest.raises(PayloadError):
        codec.encode(2**28)
    with pytest.raises(PayloadError):
        get_codec("p16")
