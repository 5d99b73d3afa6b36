"""Where discovery speaks: which interfaces, which advertised addresses, which sources to hear.

Follows the node's bind host:

* ``127.0.0.1`` / ``localhost`` / ``::1``: loopback only (``interfaces=["127.0.0.1"]``); the
  advertised address is 127.0.0.1, so only nodes on this machine can see it.
* a specific IPv4 address: only the interface holding that address; that address is advertised.
* ``0.0.0.0`` / ``::`` / ``""``: every interface (``InterfaceChoice.All``); every
  non-loopback IPv4 address is advertised.

python-zeroconf always receives on one socket bound to ``0.0.0.0:5353``, whatever
``interfaces`` says; with a stock instance a "loopback only" node still answers unicast
queries sent to the machine's LAN address, and multicast queries from the LAN as soon as any
other program on the machine (avahi, another node) has joined the mDNS group there. For a
restricted bind host, :func:`restrict_sockets` therefore sets ``IP_MULTICAST_ALL=0`` on that
socket (Linux) and drops every datagram whose source is not on the bound network (127.0.0.0/8
for loopback, the interface's subnet otherwise) before zeroconf sees it.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import sys
from dataclasses import dataclass
from typing import Any

import ifaddr
from zeroconf import InterfaceChoice, Zeroconf

__all__ = ["Binding", "SourceFilter", "local_ipv4_networks", "resolve_binding", "restrict_sockets"]

log = logging.getLogger(__name__)


_ANY_HOSTS = {"", "0.0.0.0", "::", "*"}
_LOOPBACK_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost"}


@dataclass(frozen=True)
class Binding:
    interfaces: list[str] | InterfaceChoice
    addresses: tuple[str, ...]  # advertised A records
    allowed: tuple[ipaddress.IPv4Network, ...] | None  # accepted sources; None = all
    loopback: bool


def local_ipv4_networks() -> list[ipaddress.IPv4Interface]:
    out = []
    for adapter in ifaddr.get_adapters():
        for ip in adapter.ips:
            if ip.is_IPv4:
                out.append(ipaddress.IPv4Interface(f"{ip.ip}/{ip.network_prefix}"))
    return out


def resolve_binding(bind_host: str) -> Binding:
    host = (bind_host or "").strip()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if host in _ANY_HOSTS:
        nets = local_ipv4_networks()
        addrs = [str(n.ip) for n in nets if not n.ip.is_loopback]
        return Binding(
            interfaces=InterfaceChoice.All,
            addresses=tuple(dict.fromkeys(addrs)) or ("127.0.0.1",),
            allowed=None,
            loopback=False,
        )
    if host.lower() in _LOOPBACK_NAMES:
        host = "127.0.0.1"
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        # a host name: use the IPv4 address it resolves to
        infos = socket.getaddrinfo(host, None, socket.AF_INET, socket.SOCK_DGRAM)
        if not infos:
            raise ValueError(f"cannot resolve bind host {bind_host!r}") from None
        ip = ipaddress.ip_address(infos[0][4][0])
    if ip.is_loopback:
        # python-zeroconf cannot do mDNS on ::1; loopback discovery is IPv4 127.0.0.1.
        return Binding(
            interfaces=["127.0.0.1"],
            addresses=("127.0.0.1",),
            allowed=(ipaddress.IPv4Network("127.0.0.0/8"),),
            loopback=True,
        )
    if ip.version != 4:
        raise ValueError(
            f"discovery needs an IPv4 bind host (or 0.0.0.0 / 127.0.0.1), got {bind_host!r}"
        )
    for net in local_ipv4_networks():
        if net.ip == ip:
            return Binding(
                interfaces=[str(ip)],
                addresses=(str(ip),),
                allowed=(net.network,),
                loopback=False,
            )
    raise ValueError(f"bind host {bind_host!r} is not an address of this machine")


# Linux: a socket bound to INADDR_ANY otherwise receives every multicast group that *any*
# socket on the machine joined, on any interface.
_IP_MULTICAST_ALL = getattr(socket, "IP_MULTICAST_ALL", 49)


class SourceFilter(asyncio.DatagramProtocol):
    """Sits in front of a zeroconf listener and drops datagrams from outside `allowed`."""

    def __init__(self, inner: asyncio.DatagramProtocol, allowed: tuple[ipaddress.IPv4Network, ...]):
        self.inner = inner
        self.allowed = allowed

    def _ok(self, addr: Any) -> bool:
        try:
            ip = ipaddress.ip_address(addr[0])
        except (ValueError, TypeError, IndexError):
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip in net for net in self.allowed)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if self._ok(addr):
            self.inner.datagram_received(data, addr)

    def error_received(self, exc: Exception) -> None:
        self.inner.error_received(exc)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:  # pragma: no cover
        self.inner.connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.inner.connection_lost(exc)



def restrict_sockets(zc: Zeroconf, allowed: tuple[ipaddress.IPv4Network, ...]) -> list[SourceFilter]:
    """Keep a restricted node from hearing (and so answering) anything off its network."""
    filters = []
    for reader in list(zc.engine.readers):
        transport = reader.transport
        sock = transport.get_extra_info("socket")
        if sock is not None and sys.platform.startswith("linux"):
            try:
                if sock.getsockname()[0] in ("0.0.0.0", "::"):
                    sock.setsockopt(socket.IPPROTO_IP, _IP_MULTICAST_ALL, 0)
            except OSError as exc:  # pragma: no cover - old kernels
                log.debug("discovery: IP_MULTICAST_ALL not set: %s", exc)
        inner = transport.get_protocol()
        if isinstance(inner, SourceFilter):
            continue
        filt = SourceFilter(inner, allowed)  # type: ignore[arg-type]
        transport.set_protocol(filt)
        filters.append(filt)
    return filters
