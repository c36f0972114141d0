"""Signing keys for C2PA: a local *test* CA and an ES256 signing certificate.

C2PA validators check the signer certificate's profile (C2PA spec, "Certificate
Profile"): X.509 v3, ``digitalSignature`` key usage, an extended key usage from the
allowed list (we use ``emailProtection`` and ``documentSigning``), not a CA, with
Authority and Subject Key Identifiers. :func:`init_keys` writes such a chain. The CA is
**for testing only**: nobody else trusts it, so a manifest it signs reads *Valid*
everywhere and *Trusted* only where this CA is configured as a trust anchor.

Bring your own: :func:`load_signing_material` accepts any PEM chain (signing
certificate first) and PEM private key, e.g. from a commercial C2PA CA.

Private keys are written with mode 0600 and never printed or logged.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, ObjectIdentifier

from genvis_trust.io import atomic_write_bytes, atomic_write_text

__all__ = [
    "KeyError_",
    "SigningMaterial",
    "TEST_CA_WARNING",
    "init_keys",
    "load_signing_material",
]

TEST_CA_WARNING = (
    "the local CA created by `keys init` is for testing: manifests it signs are "
    "'Valid' but only 'Trusted' where you configure its certificate as a trust anchor"
)

# id-kp-documentSigning (RFC 9336), accepted by C2PA validators besides emailProtection.
_DOCUMENT_SIGNING = ObjectIdentifier("1.3.6.1.5.5.7.3.36")

CA_CERT, CA_KEY = "ca.cert.pem", "ca.key.pem"
SIGN_CERT, SIGN_KEY, CHAIN = "signer.cert.pem", "signer.key.pem", "signer.chain.pem"
KEYS_INFO = "keys.json"


class KeyError_(ValueError):
    """Unusable key material: missing files, wrong algorithm, a key that does not match."""


@dataclass
class SigningMaterial:
    """What signing needs: the PEM chain (signer first), the PEM key, the algorithm."""

    chain_pem: bytes
    key_pem: bytes
    alg: str = "es256"
    source: str = ""

    def __repr__(self) -> str:  # never show key bytes
        return f"SigningMaterial(alg={self.alg!r}, source={self.source!r}, key=<hidden>)"

    @property
    def signer_certificate(self) -> x509.Certificate:
        return x509.load_pem_x509_certificates(self.chain_pem)[0]


def _name(cn: str, org: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, org),
            x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
        ]
    )


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def init_keys(
    directory: str | os.PathLike,
    *,
    organization: str = "genvis-trust local test",
    common_name: str = "genvis-trust signer",
    days: int = 365,
    overwrite: bool = False,
) -> dict:
    """Create ``ca.*.pem`` (test CA) and ``signer.*.pem`` (ES256 signer) in ``directory``.

    Returns a summary (paths, fingerprints, validity); refuses to overwrite unless asked.
    """
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    existing = [n for n in (CA_KEY, SIGN_KEY) if (d / n).exists()]
    if existing and not overwrite:
        raise KeyError_(f"{d}: keys already exist ({', '.join(existing)}); pass overwrite=True")
    now = _dt.datetime.now(_dt.timezone.utc) - _dt.timedelta(minutes=5)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name(f"{organization} CA (TESTING ONLY)", organization)
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + _dt.timedelta(days=days * 2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True,
                crl_sign=True, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ca_ski, critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name, organization))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + _dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=False,
                crl_sign=False, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION, _DOCUMENT_SIGNING]),
            critical=False,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    atomic_write_bytes(d / CA_KEY, _key_pem(ca_key), mode=0o600)
    atomic_write_bytes(d / SIGN_KEY, _key_pem(key), mode=0o600)
    atomic_write_bytes(d / CA_CERT, ca_cert.public_bytes(pem), mode=0o644)
    atomic_write_bytes(d / SIGN_CERT, cert.public_bytes(pem), mode=0o644)
    atomic_write_bytes(d / CHAIN, cert.public_bytes(pem) + ca_cert.public_bytes(pem), mode=0o644)
    info = {
        "warning": TEST_CA_WARNING,
        "alg": "es256",
        "ca_certificate": str(d / CA_CERT),
        "signer_chain": str(d / CHAIN),
        "signer_key": str(d / SIGN_KEY),
        "signer_subject": cert.subject.rfc4514_string(),
        "ca_sha256": ca_cert.fingerprint(hashes.SHA256()).hex(),
        "signer_sha256": cert.fingerprint(hashes.SHA256()).hex(),
        "not_after": cert.not_valid_after_utc.isoformat(),
    }
    atomic_write_text(d / KEYS_INFO, json.dumps(info, indent=2) + "\n", mode=0o644)
    return info


def load_signing_material(
    keys_dir: str | os.PathLike | None = None,
    *,
    cert_chain: str | os.PathLike | None = None,
    private_key: str | os.PathLike | None = None,
) -> SigningMaterial:
    """Load a signing chain and key: from a ``keys init`` folder, or your own PEM files.

    Checks that the key is ECDSA P-256 (ES256) and matches the first certificate.
    """
    if cert_chain is None and private_key is None:
        if keys_dir is None:
            raise KeyError_("give a keys folder or --cert-chain and --private-key")
        cert_chain, private_key = Path(keys_dir) / CHAIN, Path(keys_dir) / SIGN_KEY
    elif cert_chain is None or private_key is None:
        raise KeyError_("--cert-chain and --private-key go together")
    chain_path, key_path = Path(cert_chain), Path(private_key)
    for p in (chain_path, key_path):
        if not p.is_file():
            raise KeyError_(f"{p}: not found")
    chain_pem, key_pem = chain_path.read_bytes(), key_path.read_bytes()
    try:
        certs = x509.load_pem_x509_certificates(chain_pem)
    except ValueError as e:
        raise KeyError_(f"{chain_path}: not a PEM certificate chain ({e})") from None
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError) as e:
        # never echo key material; the exception text of cryptography does not include it
        raise KeyError_(f"{key_path}: not an unencrypted PEM private key ({type(e).__name__})") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
        raise KeyError_(f"{key_path}: only ES256 (ECDSA P-256) keys are supported")
    pub = certs[0].public_key()
    if pub.public_numbers() != key.public_key().public_numbers():
        raise KeyError_(f"{key_path}: the key does not match the first certificate of {chain_path}")
    return SigningMaterial(chain_pem, key_pem, "es256", source=str(chain_path))
