"""C2PA with the real c2pa-python library: keys, sign, Valid/Trusted, tamper detection."""

import os
import stat

import numpy as np
import pytest

from genvis_trust.io import encode_image
from genvis_trust.provenance.c2pa_manifest import (
    DST_TRAINED,
    build_manifest,
    read_c2pa,
    sign_image_bytes,
)
from genvis_trust.provenance.keys import KeyError_, init_keys, load_signing_material


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    d = tmp_path_factory.mktemp("keys")
    info = init_keys(d)
    return d, info


def test_keys_init_permissions_and_profile(keys):
    d, info = keys
    for name in ("ca.key.pem", "signer.key.pem"):
        assert stat.S_IMODE(os.stat(d / name).st_mode) == 0o600
    assert "testing" in info["warning"]
    m = load_signing_material(d)
    assert "key=<hidden>" in repr(m) and "PRIVATE" not in repr(m)
    from cryptography import x509

    cert = m.signer_certificate
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    assert cert.extensions.get_extension_for_class(x509.KeyUsage).value.digital_signature
    cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier)
    cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    with pytest.raises(KeyError_, match="already exist"):
        init_keys(d)


def test_bring_your_own_mismatched_key_refused(keys, tmp_path):
    d, _ = keys
    other = tmp_path / "other"
    init_keys(other)
    with pytest.raises(KeyError_, match="does not match"):
        load_signing_material(cert_chain=d / "signer.chain.pem", private_key=other / "signer.key.pem")


def _jpeg_scan_start(data: bytes) -> int:
    """Offset of the SOS marker, found by walking the segments: a plain search for FF DA can
    land inside the manifest's signature bytes (and flip the signature, not the pixels)."""
    i = 2
    while data[i] == 0xFF and data[i + 1] != 0xDA:
        i += 2 + int.from_bytes(data[i + 2 : i + 4], "big")
    assert data[i : i + 2] == b"\xff\xda"
    return i


def _flip_in_image_data(data: bytes, fmt: str) -> bytes:
    marker = {"JPEG": b"\xff\xda", "PNG": b"IDAT", "WEBP": b"VP8L"}[fmt]
    i = _jpeg_scan_start(data) if fmt == "JPEG" else data.find(marker)
    assert i > 0
    b = bytearray(data)
    b[i + 40] ^= 0x55
    return bytes(b)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_sign_read_trust_tamper(keys, fmt):
    from genvis_trust.provenance.stamp import encode_for_stamp

    d, _ = keys
    m = load_signing_material(d)
    img = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    data = encode_for_stamp(img, fmt)
    manifest = build_manifest(title="t", generator="g", family="gan", payload_bits="01" * 32,
                              watermark_backend="dwtDctSvd", record_id=7)
    signed, mbytes = sign_image_bytes(data, fmt, manifest, m)
    assert len(mbytes) > 0
    info = read_c2pa(signed, fmt)
    assert info.present and info.state == "Valid", info
    assert DST_TRAINED in info.digital_source_types
    assert {a["action"] for a in info.actions} >= {"c2pa.created", "c2pa.watermarked"}
    assert info.soft_bindings and info.generator_assertion["record_id"] == 7
    trusted = read_c2pa(signed, fmt, (d / "ca.cert.pem").read_text())
    assert trusted.state == "Trusted"
    bad = read_c2pa(_flip_in_image_data(signed, fmt), fmt)
    assert bad.state == "Invalid" and "assertion.dataHash.mismatch" in bad.failure_codes
    assert read_c2pa(data, fmt).present is False


def test_hostile_c2pa_inputs_give_error_field():
    jpeg = encode_image(np.zeros((16, 16, 3), np.uint8), "JPEG")
    # an APP11 JUMBF segment with garbage inside
    app11 = b"\xff\xeb" + (4 + 2 + 60).to_bytes(2, "big") + b"JP\x00\x00" + b"\x00\x01" + os.urandom(60)
    hostile = jpeg[:2] + app11 + jpeg[2:]
    info = read_c2pa(hostile, "JPEG")
    assert info.state != "Valid" and (info.error or not info.present)
    info = read_c2pa(b"\xff\xd8\xff" + b"\x00" * 50, "JPEG")
    assert info.error
