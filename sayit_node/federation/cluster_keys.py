"""Keys derived from the cluster secret, one per purpose.

The secret itself never leaves the node, and nothing derived from it is broadcast as such:

* ``advert_key`` -- HMAC-SHA256 key that signs every field of a node's mDNS advert
  (:mod:`.advert`);
* ``redis_password`` -- the password of the cluster's Redis, sent only inside TLS to a Redis
  whose certificate a signed advert vouched for (:mod:`.redis_tls`).

One slow, memory-hard step (scrypt, ~50 ms and 16 MiB per guess) turns the secret into a root
key; HKDF-SHA256 expands the root into independent per-purpose keys, so knowing one derived key
tells nothing about another or about the secret.

What a listener on the LAN can still do: given one signed advert, test guesses of the secret
offline (each guess costs one scrypt). That is unavoidable for any MAC under a key that only
depends on the secret, so the secret itself must be strong: :mod:`sayit_node.secrets` generates
7-word passphrases (~90 bits) and refuses typed secrets estimated below 72 bits.

Without a secret the cluster is *open*: adverts are unsigned, and a node only joins a Redis on
its own machine (the hosted Redis of an open cluster listens on 127.0.0.1 without a password).
"""

from __future__ import annotations

import functools
import hashlib
import hmac
from dataclasses import dataclass

__all__ = ["ClusterKeys", "derive_redis_password", "hkdf_sha256"]

# scrypt n=2**14, r=8: 16 MiB and ~50 ms per guess -- cheap once at start, slow for guessing.
_SCRYPT_N = 2**14
_SCRYPT_R = 8
_SCRYPT_P = 1
_ROOT_SALT = b"sayit/v2/cluster-root"


@functools.lru_cache(maxsize=8)
def _root_key(secret: str) -> bytes:
    return hashlib.scrypt(
        secret.encode("utf-8"), salt=_ROOT_SALT, n=_SCRYPT_N, r=_SCRYPT_R, p=_SCRYPT_P,
        maxmem=64 * 1024 * 1024, dklen=32,
    )


def hkdf_sha256(ikm: bytes, info: bytes, length: int = 32, salt: bytes = b"") -> bytes:
    """HKDF (RFC 5869) with SHA-256."""
    prk = hmac.new(salt or b"\0" * 32, ikm, hashlib.sha256).digest()
    out, block, counter = b"", b"", 1
    while len(out) < length:
        block = hmac.new(prk, block + info + bytes([counter]), hashlib.sha256).digest()
        out += block
        counter += 1
    return out[:length]


@dataclass(frozen=True)
class ClusterKeys:
    """Per-purpose keys of one cluster; ``ClusterKeys.derive(None)`` is the open cluster."""

    advert_key: bytes | None
    redis_password: str | None

    @property
    def open(self) -> bool:
        return self.advert_key is None

    @classmethod
    def derive(cls, secret: str | None) -> ClusterKeys:
        if not secret:
            return cls(advert_key=None, redis_password=None)
        root = _root_key(secret)
        return cls(
            advert_key=hkdf_sha256(root, b"sayit/v2/advert-mac"),
            redis_password=hkdf_sha256(root, b"sayit/v2/redis-password").hex(),
        )

    def __repr__(self) -> str:  # never print keys
        return f"ClusterKeys(open={self.open})"


def derive_redis_password(secret: str | None) -> str | None:
    """Password of the cluster's Redis (64 hex chars); ``None`` for an open cluster."""
    return ClusterKeys.derive(secret).redis_password
