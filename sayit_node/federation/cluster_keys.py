"""Keys derived from the cluster secret, one per purpose.

The secret itself never leaves the node. What is derived from it:

* the public cluster id carried in adverts (separates clusters; authenticates nothing),
* the password of the cluster's Redis.

Both go through scrypt (slow, memory-hard) so that a guess costs ~50 ms; each purpose has its
own salt, so one derived value tells nothing about another.
"""

from __future__ import annotations

import functools
import hashlib

__all__ = ["OPEN_CLUSTER_ID", "derive_cluster_id", "derive_redis_password"]

OPEN_CLUSTER_ID = "open"

# scrypt n=2**14, r=8 costs 16 MiB and ~50 ms per guess: cheap once at start, slow to brute
# force a weak secret from the id that every node broadcasts on the LAN.
_SCRYPT_N = 2**14
_SCRYPT_R = 8
_SCRYPT_P = 1
_CLUSTER_ID_SALT = b"sayit/v1/cluster-id"
_REDIS_PASSWORD_SALT = b"sayit/v1/redis-password"


@functools.lru_cache(maxsize=16)
def _kdf(secret: str, salt: bytes, length: int) -> bytes:
    return hashlib.scrypt(
        secret.encode("utf-8"),
        salt=salt,
        n=_SCRYPT_N,
        r=_SCRYPT_R,
        p=_SCRYPT_P,
        maxmem=64 * 1024 * 1024,
        dklen=length,
    )


def derive_cluster_id(secret: str | None) -> str:
    """Public cluster id for a cluster secret: 16 hex chars, or ``"open"`` without a secret.

    Deliberately slow (scrypt); the result is cached per secret within the process.
    """
    if not secret:
        return OPEN_CLUSTER_ID
    return _kdf(secret, _CLUSTER_ID_SALT, 8).hex()


def derive_redis_password(secret: str | None) -> str | None:
    """Password for the cluster's Redis (64 hex chars), independent of the cluster id.

    ``None`` without a secret: an open cluster has no shared password.
    """
    if not secret:
        return None
    return _kdf(secret, _REDIS_PASSWORD_SALT, 32).hex()

