"""Java's trust store (/etc/ssl/certs/java/cacerts) from the CA bundle, as a JKS file.

Debian makes it in ca-certificates-java's maintainer script, which runs Java; Google
writes it at build time. distill writes it here: a JKS file of trusted-certificate
entries is a short, fixed format (magic, version, entries, then a SHA-1 over the
password, a fixed salt phrase and everything before it), which Java 17 reads as its
default trust store. No PyPI package for it is kept up (pyjks was last released in
2020), so these forty lines are written here rather than taken on as a dependency.
"""

from __future__ import annotations

import hashlib
import re
import ssl
import struct

#: The password every JDK's cacerts has (it guards integrity, not secrecy).
PASSWORD = "changeit"
_MAGIC = 0xFEEDFEED
_VERSION = 2
_TRUSTED_CERT = 2
_PEM = re.compile(rb"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", re.DOTALL)


def pem_certificates(bundle: bytes) -> list[bytes]:
    """The DER bytes of every certificate in a PEM bundle, in order."""
    return [ssl.PEM_cert_to_DER_cert(m.group().decode("ascii"))
            for m in _PEM.finditer(bundle)]


def _utf(text: str) -> bytes:
    data = text.encode("utf-8")
    return struct.pack(">H", len(data)) + data


def jks_truststore(certs: list[tuple[str, bytes]], *, created_ms: int,
                   password: str = PASSWORD) -> bytes:
    """A JKS keystore holding ``certs`` ((alias, DER) pairs; aliases must be unique
    and are stored as given) as trusted certificates dated ``created_ms``."""
    out = bytearray(struct.pack(">III", _MAGIC, _VERSION, len(certs)))
    for alias, der in certs:
        out += struct.pack(">I", _TRUSTED_CERT) + _utf(alias) + struct.pack(">Q", created_ms)
        out += _utf("X.509") + struct.pack(">I", len(der)) + der
    digest = hashlib.sha1(password.encode("utf-16-be") + b"Mighty Aphrodite" + bytes(out),
                          usedforsecurity=False).digest()
    return bytes(out + digest)


def truststore_from_bundle(bundle: bytes, *, created_ms: int) -> bytes:
    """Every certificate of the PEM ``bundle``, aliased by its fingerprint
    (the bundle has no names; the alias only has to be unique)."""
    certs = []
    for der in pem_certificates(bundle):
        alias = f"distill:{hashlib.sha256(der).hexdigest()[:16]}"
        certs.append((alias, der))
    unique = dict(certs)   # a certificate listed twice is stored once
    return jks_truststore(sorted(unique.items()), created_ms=created_ms)
