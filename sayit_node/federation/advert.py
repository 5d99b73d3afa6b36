"""What a node tells the LAN about itself: the signed TXT record of its ``_sayit._tcp`` service.

Every field a peer acts on is in the TXT record and covered by one HMAC-SHA256 under the
cluster's advert key (:mod:`.cluster_keys`): node id, ports, the IPv4 addresses to reach the
node at (the service's A records are *not* trusted: anyone can answer for them), whether it
hosts the cluster's Redis and the SHA-256 fingerprint of that Redis' TLS certificate, and the
time the advert was signed. A node re-signs its advert every :data:`RESIGN_SECONDS`; a reader
accepts a signature made within :data:`MAX_SKEW_SECONDS` of its own clock, and never one older
than the newest it already accepted from the same node (a replayed advert).

Keys are short (TXT strings are at most 255 bytes); the MAC input is every key/value pair but
``s`` itself, sorted by key, each length-prefixed, behind a version label, so no two different
records share one MAC input.

An open cluster (no secret) has no key: its adverts carry ``k=open`` and no ``s``. A node of an
open cluster accepts only open adverts; a node with a secret accepts only adverts signed with it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import struct
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal

from .cluster_keys import ClusterKeys

__all__ = [
    "MAX_SKEW_SECONDS",
    "PROTOCOL_VERSION",
    "RESIGN_SECONDS",
    "SERVICE_TYPE",
    "AdvertRejected",
    "NodeAdvert",
]

SERVICE_TYPE = "_sayit._tcp.local."
# 2: signed adverts (protocol 1 nodes broadcast an unsigned cluster id).
PROTOCOL_VERSION = 2
RESIGN_SECONDS = 60.0
MAX_SKEW_SECONDS = 300.0

_MAC_LABEL = b"sayit/v2/advert\0"
_MAX_TXT_VALUE = 100  # bytes; one TXT string (key=value) may not exceed 255
_MAX_ADDRESSES = 8


def _clip(value: str, limit: int = _MAX_TXT_VALUE) -> str:
    raw = value.encode("utf-8")
    if len(raw) <= limit:
        return value
    return raw[:limit].decode("utf-8", errors="ignore")


def _to_int(value: str | None, default: int | None) -> int | None:
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        return default


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _mac_input(props: Mapping[str, str]) -> bytes:
    out = [_MAC_LABEL]
    for key in sorted(props):
        if key == "s":
            continue
        k, v = key.encode("utf-8"), props[key].encode("utf-8")
        out.append(struct.pack(">H", len(k)) + k + struct.pack(">H", len(v)) + v)
    return b"".join(out)


def _mac(key: bytes, props: Mapping[str, str]) -> str:
    return _b64(hmac.new(key, _mac_input(props), hashlib.sha256).digest())


RejectKind = Literal["foreign", "stale", "malformed"]


class AdvertRejected(ValueError):
    """An advert this node will not act on. ``kind``: "malformed" (not a SayIt advert or
    unreadable), "foreign" (not signed with our cluster's key: another cluster, or forged),
    "stale" (signed too long ago, in the future, or older than one already accepted)."""

    def __init__(self, kind: RejectKind, reason: str, node_id: str | None = None) -> None:
        super().__init__(reason)
        self.kind = kind
        self.node_id = node_id


@dataclass(frozen=True, kw_only=True)
class NodeAdvert:
    """What a node tells the LAN about itself (the TXT record of its mDNS service)."""

    node_id: str
    name: str = ""
    version: str = ""
    protocol: int = PROTOCOL_VERSION
    engine: str = ""
    model: str = ""
    cores: int = 0
    api_port: int
    hosts_redis: bool = False
    redis_port: int | None = None  # the hosted Redis' TLS port
    cert_fingerprint: str = ""  # SHA-256 of the hosted Redis' certificate (DER), hex
    # IPv4 addresses the node is reachable at (signed). When advertising, Discovery sets them
    # from its bind host (what is set here is ignored).
    addresses: tuple[str, ...] = ()
    signed_at: int = 0  # unix time of the signature (0: not signed yet / open cluster)

    def __post_init__(self) -> None:
        if not self.node_id or len(self.node_id.encode("utf-8")) > 64:
            raise ValueError("node_id must be 1..64 bytes")
        if not 0 < self.api_port < 65536:
            raise ValueError(f"api_port out of range: {self.api_port}")
        object.__setattr__(self, "addresses", tuple(self.addresses))

    def same_content(self, other: NodeAdvert) -> bool:
        """Equal but for the signing time (a re-signed advert is not news)."""
        return replace(self, signed_at=0) == replace(other, signed_at=0)

    def to_properties(self, keys: ClusterKeys, now: float | None = None) -> dict[str, str]:
        """TXT record, signed with the cluster's advert key (``k=open`` without one)."""
        props = {
            "id": self.node_id,
            "n": _clip(self.name),
            "v": _clip(self.version, 40),
            "p": str(self.protocol),
            "e": _clip(self.engine, 40),
            "m": _clip(self.model),
            "c": str(self.cores),
            "ap": str(self.api_port),
            "a": ",".join(self.addresses[:_MAX_ADDRESSES]),
            "r": "1" if self.hosts_redis else "0",
        }
        if self.redis_port is not None:
            props["rp"] = str(self.redis_port)
        if self.cert_fingerprint:
            props["fp"] = self.cert_fingerprint
        if keys.advert_key is None:
            props["k"] = "open"
            return props
        props["k"] = "mac"
        props["t"] = str(int(time.time() if now is None else now))
        props["s"] = _mac(keys.advert_key, props)
        return props

    @classmethod
    def from_properties(
        cls, props: Mapping[Any, Any], keys: ClusterKeys, *, now: float | None = None,
        newest: int = 0,
    ) -> NodeAdvert:
        """Verify and read a TXT record; raises :class:`AdvertRejected`.

        ``newest``: the latest ``signed_at`` already accepted from this node id (an older
        signature is a replay).
        """
        p: dict[str, str] = {}
        for key, value in props.items():
            try:
                k = key.decode("utf-8") if isinstance(key, bytes) else str(key)
                v = value.decode("utf-8") if isinstance(value, bytes) else ("" if value is None else str(value))
            except UnicodeDecodeError:
                raise AdvertRejected("malformed", "TXT record is not UTF-8") from None
            p[k] = v
        node_id = p.get("id") or None
        if not node_id or "ap" not in p:
            raise AdvertRejected("malformed", "not a SayIt advert (no node id or API port)")
        kind = p.get("k")
        if keys.advert_key is None:
            if kind != "open":
                raise AdvertRejected("foreign", "signed by a cluster with a secret (we have none)", node_id)
            signed_at = 0
        else:
            if kind != "mac" or "s" not in p:
                raise AdvertRejected("foreign", "unsigned (an open node, or an older SayIt)", node_id)
            if not hmac.compare_digest(p["s"], _mac(keys.advert_key, p)):
                raise AdvertRejected("foreign", "signature does not match our cluster secret", node_id)
            signed_at = _to_int(p.get("t"), 0) or 0
            now = time.time() if now is None else now
            if abs(now - signed_at) > MAX_SKEW_SECONDS:
                raise AdvertRejected("stale", f"signed {now - signed_at:+.0f} s from now "
                                              f"(more than {MAX_SKEW_SECONDS:.0f} s: replay or clock skew)", node_id)
            if signed_at < newest:
                raise AdvertRejected("stale", "older than an advert already seen (replayed)", node_id)
        addresses = []
        for a in (p.get("a") or "").split(","):
            try:
                addresses.append(str(ipaddress.IPv4Address(a.strip())))
            except ValueError:
                continue
        try:
            return cls(
                node_id=node_id,
                name=p.get("n") or "",
                version=p.get("v") or "",
                protocol=_to_int(p.get("p"), 0) or 0,  # unparseable -> flagged incompatible
                engine=p.get("e") or "",
                model=p.get("m") or "",
                cores=_to_int(p.get("c"), 0) or 0,
                api_port=_to_int(p.get("ap"), 0) or 0,
                hosts_redis=p.get("r") == "1",
                redis_port=_to_int(p.get("rp"), None),
                cert_fingerprint=p.get("fp") or "",
                addresses=tuple(addresses),
                signed_at=signed_at,
            )
        except ValueError as exc:
            raise AdvertRejected("malformed", str(exc), node_id) from None
