"""What a node tells the LAN about itself: the TXT record of its ``_sayit._tcp`` service."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from zeroconf import IPVersion
from zeroconf.asyncio import AsyncServiceInfo

from .cluster_keys import OPEN_CLUSTER_ID

__all__ = ["PROTOCOL_VERSION", "SERVICE_TYPE", "NodeAdvert"]

SERVICE_TYPE = "_sayit._tcp.local."
PROTOCOL_VERSION = 1


_MAX_TXT_VALUE = 100  # bytes; one TXT string (key=value) may not exceed 255


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
    cluster_id: str = OPEN_CLUSTER_ID
    hosts_redis: bool = False
    redis_port: int | None = None
    # Filled from the service's A records when read from the network; when advertising,
    # Discovery sets them from its bind host (what is set here is ignored).
    addresses: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.node_id or len(self.node_id.encode("utf-8")) > 64:
            raise ValueError("node_id must be 1..64 bytes")
        if not 0 < self.api_port < 65536:
            raise ValueError(f"api_port out of range: {self.api_port}")
        object.__setattr__(self, "addresses", tuple(self.addresses))

    def to_properties(self) -> dict[str, str]:
        """TXT record: short keys, all values str."""
        props = {
            "id": self.node_id,
            "n": _clip(self.name),
            "v": _clip(self.version, 40),
            "p": str(self.protocol),
            "e": _clip(self.engine, 40),
            "m": _clip(self.model),
            "c": str(self.cores),
            "ap": str(self.api_port),
            "cl": self.cluster_id,
            "r": "1" if self.hosts_redis else "0",
        }
        if self.redis_port is not None:
            props["rp"] = str(self.redis_port)
        return props

    @classmethod
    def from_properties(
        cls, props: Mapping[Any, Any], *, addresses: Iterable[str] = (), port: int | None = None
    ) -> NodeAdvert:
        """Inverse of :meth:`to_properties`; keys/values may be bytes. ValueError if not SayIt's."""
        p: dict[str, str | None] = {}
        for key, value in props.items():
            k = key.decode("utf-8", "replace") if isinstance(key, bytes) else str(key)
            v = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
            p[k] = None if v is None else str(v)
        node_id = p.get("id")
        if not node_id:
            raise ValueError("not a SayIt advert: no node id in TXT")
        api_port = _to_int(p.get("ap"), port)
        if api_port is None:
            raise ValueError("not a SayIt advert: no API port")
        return cls(
            node_id=node_id,
            name=p.get("n") or "",
            version=p.get("v") or "",
            protocol=_to_int(p.get("p"), 0) or 0,  # unparseable -> flagged incompatible
            engine=p.get("e") or "",
            model=p.get("m") or "",
            cores=_to_int(p.get("c"), 0) or 0,
            api_port=api_port,
            cluster_id=p.get("cl") or OPEN_CLUSTER_ID,
            hosts_redis=p.get("r") == "1",
            redis_port=_to_int(p.get("rp"), None),
            addresses=tuple(addresses),
        )

    @classmethod
    def from_service_info(cls, info: AsyncServiceInfo) -> NodeAdvert:
        """Read an advert from a resolved zeroconf ServiceInfo (IPv4 addresses only)."""
        return cls.from_properties(
            info.properties or {},
            addresses=info.parsed_addresses(IPVersion.V4Only),
            port=info.port,
        )

