"""TLS for the cluster's Redis, pinned through the signed advert.

The node that hosts Redis makes a self-signed certificate once (kept in its data directory,
key and certificate 0600) and runs redis-server with TLS only (``--port 0 --tls-port N``). The
SHA-256 fingerprint of that certificate travels inside the node's signed mDNS advert
(:mod:`.advert`), which only holders of the cluster secret can produce.

A joining node connects with ``rediss://`` and checks, right after the TLS handshake and
*before* redis-py sends ``AUTH``, that the server's certificate has exactly that fingerprint
(:class:`PinnedSSLConnection`). So the Redis password never crosses the network in clear and
never goes to a server that has not proven it holds the key behind the signed certificate: an
impostor (a copied advert with another address, or a relay of the real node's ports) gets no
credential byte -- a relay only ever sees TLS records.

The pin rides in the URL, ``rediss://:PASSWORD@HOST:PORT/0?ssl_fingerprint=SHA256HEX``, so a
hand-written ``REDIS_URL`` can point at a SayIt-hosted Redis the same way; see
:func:`sayit_node.federation.registry.make_redis_client`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import logging
import os
from pathlib import Path
from urllib.parse import parse_qs, quote, urlsplit

from redis.asyncio.connection import SSLConnection
from redis.exceptions import ConnectionError as RedisConnectionError

__all__ = [
    "CertificateMismatch",
    "PinnedSSLConnection",
    "ensure_certificate",
    "pinned_fingerprint",
    "pinned_url",
    "write_private",
]

log = logging.getLogger(__name__)

CERT_NAME = "tls.crt"
KEY_NAME = "tls.key"


class CertificateMismatch(RedisConnectionError):
    """The Redis at this address is not the one the cluster's signed advert names."""


def fingerprint_of(der: bytes) -> str:
    return hashlib.sha256(der).hexdigest()


def write_private(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def ensure_certificate(directory: Path) -> tuple[Path, Path, str]:
    """The hosted Redis' certificate and key (made on first use); returns (cert, key, sha256 hex)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    directory.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = directory / CERT_NAME, directory / KEY_NAME
    if cert_path.is_file() and key_path.is_file():
        try:
            cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
            serialization.load_pem_private_key(key_path.read_bytes(), password=None)
            if cert.not_valid_after_utc > dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=30):
                return cert_path, key_path, fingerprint_of(cert.public_bytes(serialization.Encoding.DER))
        except (ValueError, TypeError) as exc:
            log.warning("hosted Redis: unusable TLS certificate in %s (%s); making a new one", directory, exc)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "SayIt cluster Redis")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=3650))
        .sign(key, hashes.SHA256())
    )
    write_private(key_path, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
    write_private(cert_path, cert.public_bytes(serialization.Encoding.PEM))
    fp = fingerprint_of(cert.public_bytes(serialization.Encoding.DER))
    log.info("hosted Redis: made a TLS certificate (sha256 %s...)", fp[:16])
    return cert_path, key_path, fp


def pinned_url(host: str, port: int, password: str | None, fingerprint: str) -> str:
    """``rediss://`` URL that only talks to the Redis holding the certificate ``fingerprint``."""
    auth = f":{quote(password, safe='')}@" if password else ""
    shown = f"[{host}]" if ":" in host else host
    return f"rediss://{auth}{shown}:{port}/0?ssl_fingerprint={fingerprint}"


def pinned_fingerprint(url: str) -> str | None:
    """The ``ssl_fingerprint`` of a rediss:// URL, or None."""
    parts = urlsplit(url)
    if parts.scheme != "rediss":
        return None
    values = parse_qs(parts.query).get("ssl_fingerprint")
    return values[0].strip().lower().replace(":", "") if values else None


class PinnedSSLConnection(SSLConnection):
    """redis-py SSL connection that accepts exactly one certificate, checked before AUTH.

    No CA, no host name: the certificate is self-signed and the pin comes from a signed
    advert (or the user's REDIS_URL). redis-py sends AUTH/HELLO in ``on_connect``, which runs
    only after ``_connect`` returned -- a mismatch raised here stops the connection first.
    """

    def __init__(self, *, ssl_fingerprint: str, **kwargs) -> None:
        kwargs["ssl_cert_reqs"] = "none"
        kwargs["ssl_check_hostname"] = False
        super().__init__(**kwargs)
        self.ssl_fingerprint = ssl_fingerprint.strip().lower().replace(":", "")
        if len(self.ssl_fingerprint) != 64:
            raise ValueError("ssl_fingerprint must be the certificate's SHA-256 (64 hex digits)")

    async def _connect(self):
        await super()._connect()
        ssl_object = self._writer.transport.get_extra_info("ssl_object") if self._writer else None
        der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
        got = fingerprint_of(der) if der else ""
        if not hmac.compare_digest(got, self.ssl_fingerprint):
            self._writer.transport.abort()
            self._reader = self._writer = None
            raise CertificateMismatch(
                f"Redis at {self.host}:{self.port} presents certificate sha256 {got[:16] or '(none)'}..., "
                f"not {self.ssl_fingerprint[:16]}... named by the cluster: not sending the password"
            )


try:  # the same check for redis-py's blocking client (the container health check uses it)
    from redis.connection import SSLConnection as _SyncSSLConnection
except ImportError:  # pragma: no cover
    _SyncSSLConnection = None

if _SyncSSLConnection is not None:

    class PinnedSyncSSLConnection(_SyncSSLConnection):
        """Blocking twin of :class:`PinnedSSLConnection`."""

        def __init__(self, *, ssl_fingerprint: str, **kwargs) -> None:
            kwargs["ssl_cert_reqs"] = "none"
            kwargs["ssl_check_hostname"] = False
            super().__init__(**kwargs)
            self.ssl_fingerprint = ssl_fingerprint.strip().lower().replace(":", "")

        def _connect(self):
            sock = super()._connect()
            der = sock.getpeercert(binary_form=True)
            got = fingerprint_of(der) if der else ""
            if not hmac.compare_digest(got, self.ssl_fingerprint):
                sock.close()
                raise CertificateMismatch(f"Redis at {self.host}:{self.port} presents another certificate "
                                          f"(sha256 {got[:16] or '(none)'}...): not sending the password")
            return sock
