"""Find other SayIt nodes on the LAN over mDNS / DNS-SD, and tell which of them are alive.

Each node advertises one ``_sayit._tcp.local.`` service whose TXT record carries a
:class:`NodeAdvert` (node id, engine, model, API port, cluster id, ...), and browses for the
same type. Discovery only *finds* peers; whether a peer is alive is decided here by our own
checks, never by zeroconf's cache: a node that dies without sending its goodbye (SIGKILL,
power loss, cable pulled) stays in every browser's cache for ~1125 s. So every
``check_interval`` seconds each known peer gets ``GET http://{address}:{api_port}/api/health``
(or is vouched for by an optional external liveness source such as Redis heartbeats); a peer
with no evidence of life for ``dead_after`` seconds is reported ``"down"``, and after
``forget_after`` seconds it disappears from :meth:`Discovery.peers` (it comes back by itself
if it answers again). A clean stop sends mDNS goodbyes, so peers drop it within milliseconds.

Where discovery speaks follows the node's bind host:

* ``127.0.0.1`` / ``localhost`` / ``::1``: loopback only (``interfaces=["127.0.0.1"]``); the
  advertised address is 127.0.0.1, so only nodes on this machine can see it.
* a specific IPv4 address: only the interface holding that address; that address is advertised.
* ``0.0.0.0`` / ``::`` / ``""``: every interface (``InterfaceChoice.All``); every
  non-loopback IPv4 address is advertised.

python-zeroconf always receives on one socket bound to ``0.0.0.0:5353``, whatever
``interfaces`` says; with a stock instance a "loopback only" node still answers unicast
queries sent to the machine's LAN address, and multicast queries from the LAN as soon as any
other program on the machine (avahi, another node) has joined the mDNS group there. For a
restricted bind host, :class:`Discovery` therefore sets ``IP_MULTICAST_ALL=0`` on that socket
(Linux) and drops every datagram whose source is not on the bound network (127.0.0.0/8 for
loopback, the interface's subnet otherwise) before zeroconf sees it.

Cluster separation: ``cluster_id`` is derived from the shared cluster secret with a slow
keyed KDF; nodes only pair up with nodes advertising the same id. The id does not reveal the
secret, but anyone on the LAN can read it and advertise it too — it separates clusters, it
does not authenticate peers. Peers with a different ``protocol`` are listed but flagged
``compatible=False``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import inspect
import ipaddress
import logging
import re
import socket
import sys
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal

import httpx
import ifaddr
from zeroconf import DNSQuestionType, InterfaceChoice, IPVersion, ServiceStateChange, Zeroconf
from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

__all__ = [
    "OPEN_CLUSTER_ID",
    "PROTOCOL_VERSION",
    "SERVICE_TYPE",
    "Discovery",
    "NodeAdvert",
    "PeerRecord",
    "derive_cluster_id",
    "derive_redis_password",
]

log = logging.getLogger(__name__)

SERVICE_TYPE = "_sayit._tcp.local."
PROTOCOL_VERSION = 1
OPEN_CLUSTER_ID = "open"
HEALTH_PATH = "/api/health"

# --- cluster secret -> public id / Redis password ------------------------------------------

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


# --- the advertisement ----------------------------------------------------------------------

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


# --- peers ----------------------------------------------------------------------------------

PeerState = Literal["up", "down"]
ChangeEvent = Literal["added", "updated", "down", "up", "removed"]


@dataclass(frozen=True)
class PeerRecord:
    """A snapshot of one peer as this node sees it."""

    advert: NodeAdvert
    address: str | None  # the address liveness checks use (and callers should use)
    state: PeerState
    compatible: bool  # speaks the same protocol version as this node
    last_seen: float  # time.monotonic() of the last evidence of life
    first_seen: float  # time.monotonic() when first discovered
    service_name: str
    last_error: str | None = None

    @property
    def node_id(self) -> str:
        return self.advert.node_id

    @property
    def alive(self) -> bool:
        return self.state == "up"

    @property
    def base_url(self) -> str | None:
        """``http://address:api_port`` (IPv6 bracketed), or None without an address."""
        if not self.address:
            return None
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"http://{host}:{self.advert.api_port}"

    def as_dict(self, now: float | None = None) -> dict[str, Any]:
        """JSON-friendly view (for /api/nodes, `sayit-node peers`)."""
        now = time.monotonic() if now is None else now
        a = self.advert
        return {
            "node_id": a.node_id,
            "name": a.name,
            "version": a.version,
            "protocol": a.protocol,
            "compatible": self.compatible,
            "engine": a.engine,
            "model": a.model,
            "cores": a.cores,
            "address": self.address,
            "api_port": a.api_port,
            "url": self.base_url,
            "hosts_redis": a.hosts_redis,
            "redis_port": a.redis_port,
            "state": self.state,
            "seen_seconds_ago": round(max(0.0, now - self.last_seen), 3),
            "last_error": self.last_error,
        }


@dataclass
class _Tracked:
    """Mutable bookkeeping for one service name the browser reported."""

    service_name: str
    advert: NodeAdvert
    addresses: list[str]
    addr_index: int = 0
    state: PeerState = "up"
    visible: bool = True  # False once forgotten; still probed (slowly) until zeroconf drops it
    last_seen: float = 0.0
    first_seen: float = 0.0
    last_error: str | None = None
    next_probe: float = 0.0
    compatible: bool = True

    @property
    def address(self) -> str | None:
        if not self.addresses:
            return None
        return self.addresses[self.addr_index % len(self.addresses)]

    def snapshot(self) -> PeerRecord:
        return PeerRecord(
            advert=self.advert,
            address=self.address,
            state=self.state,
            compatible=self.compatible,
            last_seen=self.last_seen,
            first_seen=self.first_seen,
            service_name=self.service_name,
            last_error=self.last_error,
        )


# --- where to speak -------------------------------------------------------------------------

_ANY_HOSTS = {"", "0.0.0.0", "::", "*"}
_LOOPBACK_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost"}


@dataclass(frozen=True)
class _Binding:
    interfaces: list[str] | InterfaceChoice
    addresses: tuple[str, ...]  # advertised A records
    allowed: tuple[ipaddress.IPv4Network, ...] | None  # accepted sources; None = all
    loopback: bool


def _local_ipv4_networks() -> list[ipaddress.IPv4Interface]:
    out = []
    for adapter in ifaddr.get_adapters():
        for ip in adapter.ips:
            if ip.is_IPv4:
                out.append(ipaddress.IPv4Interface(f"{ip.ip}/{ip.network_prefix}"))
    return out


def _resolve_binding(bind_host: str) -> _Binding:
    host = (bind_host or "").strip()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if host in _ANY_HOSTS:
        nets = _local_ipv4_networks()
        addrs = [str(n.ip) for n in nets if not n.ip.is_loopback]
        return _Binding(
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
        return _Binding(
            interfaces=["127.0.0.1"],
            addresses=("127.0.0.1",),
            allowed=(ipaddress.IPv4Network("127.0.0.0/8"),),
            loopback=True,
        )
    if ip.version != 4:
        raise ValueError(
            f"discovery needs an IPv4 bind host (or 0.0.0.0 / 127.0.0.1), got {bind_host!r}"
        )
    for net in _local_ipv4_networks():
        if net.ip == ip:
            return _Binding(
                interfaces=[str(ip)],
                addresses=(str(ip),),
                allowed=(net.network,),
                loopback=False,
            )
    raise ValueError(f"bind host {bind_host!r} is not an address of this machine")


# Linux: a socket bound to INADDR_ANY otherwise receives every multicast group that *any*
# socket on the machine joined, on any interface.
_IP_MULTICAST_ALL = getattr(socket, "IP_MULTICAST_ALL", 49)


class _SourceFilter(asyncio.DatagramProtocol):
    """Sits in front of a zeroconf listener and drops datagrams from outside `allowed`."""

    def __init__(self, inner: asyncio.DatagramProtocol, allowed: tuple[ipaddress.IPv4Network, ...]):
        self.inner = inner
        self.allowed = allowed
        self.dropped = 0

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
        else:
            self.dropped += 1

    def error_received(self, exc: Exception) -> None:
        self.inner.error_received(exc)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:  # pragma: no cover
        self.inner.connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.inner.connection_lost(exc)


def _instance_label(node_id: str) -> str:
    label = re.sub(r"[^A-Za-z0-9-]+", "-", node_id).strip("-")
    if not label or len(label) > 40 or label != node_id:
        digest = hashlib.sha256(node_id.encode("utf-8")).hexdigest()[:10]
        label = f"{label[:40]}-{digest}".strip("-")
    return f"sayit-{label}"


# --- Discovery ------------------------------------------------------------------------------

OnChange = Callable[[ChangeEvent, PeerRecord], Any]
LivenessSource = Callable[[], set[str] | Awaitable[set[str]]]


class Discovery:
    """Advertise this node and keep a live table of peers of the same cluster.

    Run it on the node's event loop::

        disc = Discovery(advert, bind_host=settings.host, on_change=cb)
        await disc.start()      # registers (~1.2 s: mDNS probing), starts browsing + liveness
        disc.peers()            # {node_id: PeerRecord}
        await disc.stop()       # goodbye packets, closes sockets

    ``on_change(event, record)`` is called on the loop for "added", "updated", "down", "up"
    and "removed"; it may be a plain function or a coroutine function.
    ``liveness_source()`` (sync or async) returns node ids known alive by other means (e.g.
    fresh Redis heartbeats); those peers count as alive without an HTTP check.
    """

    def __init__(
        self,
        advert: NodeAdvert,
        bind_host: str,
        on_change: OnChange | None = None,
        *,
        liveness_source: LivenessSource | None = None,
        check_interval: float = 1.0,
        check_timeout: float = 1.0,
        dead_after: float = 6.0,
        forget_after: float = 60.0,
        health_path: str = HEALTH_PATH,
    ) -> None:
        if forget_after < dead_after:
            raise ValueError("forget_after must be >= dead_after")
        self._advert_in = advert
        self.bind_host = bind_host
        self.on_change = on_change
        self.liveness_source = liveness_source
        self.check_interval = check_interval
        self.check_timeout = check_timeout
        self.dead_after = dead_after
        self.forget_after = forget_after
        self.health_path = health_path

        self._binding: _Binding | None = None
        self._aiozc: AsyncZeroconf | None = None
        self._browser: AsyncServiceBrowser | None = None
        self._info: AsyncServiceInfo | None = None
        self._http: httpx.AsyncClient | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._resolving: dict[str, asyncio.Task[Any]] = {}
        self._unresolved: set[str] = set()
        self._tracked: dict[str, _Tracked] = {}
        self._liveness_task: asyncio.Task[None] | None = None
        self._filters: list[_SourceFilter] = []
        self._started = False

    # -- public -------------------------------------------------------------------------------

    @property
    def advert(self) -> NodeAdvert:
        """This node's advert as published (addresses filled in once started)."""
        if self._binding is None:
            return self._advert_in
        return replace(self._advert_in, addresses=self._binding.addresses)

    @property
    def service_name(self) -> str | None:
        return self._info.name if self._info else None

    @property
    def zeroconf(self) -> AsyncZeroconf | None:
        """The underlying AsyncZeroconf while running (for diagnostics)."""
        return self._aiozc

    @property
    def running(self) -> bool:
        return self._started

    def peers(self, include_down: bool = True) -> dict[str, PeerRecord]:
        """Known peers of this cluster by node id (forgotten ones excluded)."""
        best: dict[str, _Tracked] = {}
        for t in self._tracked.values():
            if not t.visible or (not include_down and t.state != "up"):
                continue
            cur = best.get(t.advert.node_id)
            if cur is None or (t.state == "up", t.last_seen) > (cur.state == "up", cur.last_seen):
                best[t.advert.node_id] = t
        return {nid: t.snapshot() for nid, t in best.items()}

    async def start(self) -> None:
        """Open mDNS sockets, register this node, start browsing and liveness checks.

        Raises ValueError for a bind host that is not an address of this machine and OSError
        when the mDNS sockets cannot be opened (e.g. ``lo`` still down in a fresh network
        namespace: ENODEV). Takes ~1.2-1.4 s (mDNS probing for a unique name).
        """
        if self._started:
            return
        binding = _resolve_binding(self.bind_host)
        self._binding = binding
        try:
            aiozc = AsyncZeroconf(interfaces=binding.interfaces, ip_version=IPVersion.V4Only)
        except RuntimeError as exc:  # e.g. "No interfaces to listen on"
            raise OSError(f"mDNS cannot start for bind host {self.bind_host!r}: {exc}") from exc
        self._aiozc = aiozc
        try:
            await aiozc.zeroconf.async_wait_for_start()
            if not aiozc.zeroconf.engine.senders:
                raise OSError(f"mDNS: no usable interface for bind host {self.bind_host!r}")
            if binding.allowed is not None:
                self._restrict_sockets(aiozc.zeroconf, binding.allowed)
            self._http = httpx.AsyncClient(
                timeout=httpx.Timeout(self.check_timeout),
                trust_env=False,  # never send LAN health checks through an HTTP proxy
                follow_redirects=False,
            )
            advert = self.advert
            label = _instance_label(advert.node_id)
            self._info = self._service_info(f"{label}.{SERVICE_TYPE}", f"{label}.local.")
            # QM (multicast-answer) questions only: several mDNS stacks on one host share
            # port 5353 via SO_REUSEPORT, and the kernel hands a unicast answer (to a QU
            # question) to just one of them -- often not the one that asked.
            self._browser = AsyncServiceBrowser(
                aiozc.zeroconf,
                SERVICE_TYPE,
                handlers=[self._on_service_state_change],
                question_type=DNSQuestionType.QM,
            )
            await aiozc.async_register_service(self._info, allow_name_change=True)
            self._liveness_task = asyncio.create_task(
                self._liveness_loop(), name="sayit-discovery-liveness"
            )
            self._started = True
            log.info(
                "discovery: advertising %s as %s on %s (cluster %s)",
                advert.node_id, self._info.name, ",".join(binding.addresses), advert.cluster_id,
            )
        except BaseException:
            await self._close()
            raise

    async def stop(self) -> None:
        """Send the mDNS goodbye (so peers drop us at once) and close everything."""
        if self._aiozc is None:
            return
        self._started = False
        if self._liveness_task is not None:
            self._liveness_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._liveness_task
            self._liveness_task = None
        if self._browser is not None:
            with contextlib.suppress(Exception):
                await self._browser.async_cancel()
            self._browser = None
        if self._info is not None and self._aiozc is not None:
            try:
                goodbye = await self._aiozc.async_unregister_service(self._info)
                await asyncio.wait_for(goodbye, timeout=2.0)
            except Exception as exc:  # still close below
                log.warning("discovery: goodbye failed: %s", exc)
        await self._close()

    async def update_advert(self, **changes: Any) -> NodeAdvert:
        """Change advertised fields (e.g. ``hosts_redis=True, redis_port=6379``) and re-announce.

        Peers get an "updated" event within ~a second. ``node_id`` and ``cluster_id`` should
        not change while running (stop and start a new Discovery instead).
        """
        new = replace(self._advert_in, **changes)
        if self._info is not None and self._aiozc is not None:
            if new.api_port != self._advert_in.api_port:
                raise ValueError("api_port cannot change while running")
            self._advert_in = new
            info = self._service_info(self._info.name, self._info.server or "")
            self._info = info
            done = await self._aiozc.async_update_service(info)
            await done
        else:
            self._advert_in = new
        return self.advert

    def _service_info(self, name: str, server: str) -> AsyncServiceInfo:
        assert self._binding is not None
        advert = self.advert
        return AsyncServiceInfo(
            SERVICE_TYPE,
            name,
            port=advert.api_port,
            properties=advert.to_properties(),
            server=server,
            parsed_addresses=list(self._binding.addresses),
        )

    async def __aenter__(self) -> Discovery:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- zeroconf plumbing --------------------------------------------------------------------

    def _restrict_sockets(self, zc: Zeroconf, allowed: tuple[ipaddress.IPv4Network, ...]) -> None:
        """Keep a restricted node from hearing (and so answering) anything off its network."""
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
            if isinstance(inner, _SourceFilter):
                continue
            filt = _SourceFilter(inner, allowed)  # type: ignore[arg-type]
            transport.set_protocol(filt)
            self._filters.append(filt)

    def _on_service_state_change(
        self, zeroconf: Zeroconf, service_type: str, name: str, state_change: ServiceStateChange
    ) -> None:
        if self._info is not None and name == self._info.name:
            return
        if state_change is ServiceStateChange.Removed:
            self._forget_service(name)
            return
        self._schedule_resolve(name)

    def _schedule_resolve(self, name: str) -> None:
        old = self._resolving.get(name)
        if old is not None and not old.done():
            return
        task = asyncio.create_task(self._resolve(name))
        self._resolving[name] = task

        def done(t: asyncio.Task[Any], n: str = name) -> None:
            if self._resolving.get(n) is t:
                del self._resolving[n]

        task.add_done_callback(done)

    async def _resolve(self, name: str) -> None:
        aiozc = self._aiozc
        if aiozc is None:
            return
        info = AsyncServiceInfo(SERVICE_TYPE, name)
        try:
            ok = await info.async_request(aiozc.zeroconf, 3000, question_type=DNSQuestionType.QM)
        except Exception as exc:  # zeroconf closed under us, etc.
            log.debug("discovery: resolve %s failed: %s", name, exc)
            ok = False
        if not ok:
            self._unresolved.add(name)  # retried by the liveness loop
            return
        self._unresolved.discard(name)
        try:
            advert = NodeAdvert.from_service_info(info)
        except ValueError as exc:
            log.debug("discovery: ignoring %s: %s", name, exc)
            return
        self._upsert(name, advert)

    def _upsert(self, name: str, advert: NodeAdvert) -> None:
        own = self._advert_in
        if advert.node_id == own.node_id:
            return
        if advert.cluster_id != own.cluster_id:
            if name in self._tracked:  # its cluster changed under the same name
                self._forget_service(name)
            log.debug("discovery: %s is in another cluster; ignored", name)
            return
        now = time.monotonic()
        addresses = self._order_addresses(advert.addresses)
        t = self._tracked.get(name)
        if t is None:
            t = _Tracked(
                service_name=name,
                advert=advert,
                addresses=addresses,
                last_seen=now,  # an mDNS answer is itself fresh evidence of life
                first_seen=now,
                next_probe=now,
                compatible=advert.protocol == own.protocol,
            )
            self._tracked[name] = t
            if not t.compatible:
                log.info(
                    "discovery: %s speaks protocol %s (we speak %s)",
                    advert.node_id, advert.protocol, own.protocol,
                )
            self._emit("added", t)
            return
        changed = t.advert != advert
        t.advert = advert
        if addresses != t.addresses:
            t.addresses = addresses
            t.addr_index = 0
        t.compatible = advert.protocol == own.protocol
        if changed and t.visible:
            self._emit("updated", t)

    def _forget_service(self, name: str) -> None:
        task = self._resolving.pop(name, None)
        if task is not None:
            task.cancel()
        self._unresolved.discard(name)
        t = self._tracked.pop(name, None)
        if t is not None and t.visible:
            self._emit("removed", t)

    def _order_addresses(self, addresses: Iterable[str]) -> list[str]:
        """Put the address most likely reachable from our bind host first."""
        addrs = list(dict.fromkeys(addresses))
        binding = self._binding
        if binding is None or not addrs:
            return addrs
        local_nets = [n.network for n in _local_ipv4_networks() if not n.ip.is_loopback]

        def rank(a: str) -> tuple[int, int]:
            try:
                ip = ipaddress.ip_address(a)
            except ValueError:
                return (9, 0)
            if binding.loopback:
                return (0 if ip.is_loopback else 5, 0)
            if binding.allowed is not None and any(ip in n for n in binding.allowed):
                return (0, 0)
            if any(ip in n for n in local_nets):
                return (1, 0)
            if ip.is_loopback:
                return (8, 0)
            if ip.is_link_local:
                return (7, 0)
            return (3, 0)

        return sorted(addrs, key=rank)

    # -- liveness -----------------------------------------------------------------------------

    async def _liveness_loop(self) -> None:
        while True:
            started = time.monotonic()
            try:
                await self._check_once()
            except asyncio.CancelledError:
                raise
            except Exception:  # never let one bad round kill liveness
                log.exception("discovery: liveness round failed")
            await asyncio.sleep(max(0.05, self.check_interval - (time.monotonic() - started)))

    async def _external_alive(self) -> set[str]:
        if self.liveness_source is None:
            return set()
        try:
            result = self.liveness_source()
            if inspect.isawaitable(result):
                result = await result
            return set(result or ())
        except Exception as exc:
            log.warning("discovery: liveness source failed: %s", exc)
            return set()

    async def _check_once(self) -> None:
        for name in list(self._unresolved):
            self._schedule_resolve(name)
        now = time.monotonic()
        due = [t for t in self._tracked.values() if t.next_probe <= now]
        if not due:
            return
        external = await self._external_alive()
        results = await asyncio.gather(
            *(self._probe(t, external) for t in due), return_exceptions=True
        )
        done = time.monotonic()
        for t, res in zip(due, results):
            if self._tracked.get(t.service_name) is not t:
                continue  # removed (goodbye) while we were probing
            if isinstance(res, BaseException):
                ok, err = False, f"{type(res).__name__}: {res}"
            else:
                ok, err = res
            self._apply(t, ok, err, done)

    async def _probe(self, t: _Tracked, external: set[str]) -> tuple[bool, str | None]:
        if t.advert.node_id in external:
            return True, None
        url = t.snapshot().base_url
        if url is None or self._http is None:
            return False, "no address"
        try:
            resp = await self._http.get(url + self.health_path)
        except httpx.HTTPError as exc:
            if len(t.addresses) > 1:
                t.addr_index += 1  # try the peer's next address next round
            return False, f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        if not 200 <= resp.status_code < 300:
            return False, f"HTTP {resp.status_code}"
        # A different node now answering on that address/port is not our peer.
        with contextlib.suppress(ValueError):
            body = resp.json()
            if isinstance(body, dict) and body.get("node_id") not in (None, t.advert.node_id):
                return False, f"answered by node {body.get('node_id')!r}"
        return True, None

    def _apply(self, t: _Tracked, ok: bool, err: str | None, now: float) -> None:
        if ok:
            t.last_seen = now
            t.last_error = None
            t.next_probe = now + self.check_interval * 0.5
            if not t.visible:
                t.visible, t.state = True, "up"
                self._emit("added", t)
            elif t.state != "up":
                t.state = "up"
                self._emit("up", t)
            return
        t.last_error = err
        silent = now - t.last_seen
        if t.visible and t.state == "up" and silent > self.dead_after:
            t.state = "down"
            self._emit("down", t)
        if t.visible and silent > self.forget_after:
            t.visible = False
            self._emit("removed", t)
        # forgotten peers stay tracked (zeroconf still caches them) but are probed slowly
        t.next_probe = now + (self.check_interval * 0.5 if t.visible else max(5.0, self.check_interval))

    def _emit(self, event: ChangeEvent, t: _Tracked) -> None:
        record = t.snapshot()
        log.info("discovery: peer %s %s (%s)", record.node_id, event, record.address)
        cb = self.on_change
        if cb is None:
            return
        try:
            result = cb(event, record)
            if inspect.isawaitable(result):
                task = asyncio.ensure_future(result)
                self._tasks.add(task)
                task.add_done_callback(self._callback_done)
        except Exception:
            log.exception("discovery: on_change callback failed")

    def _callback_done(self, task: asyncio.Future[Any]) -> None:
        self._tasks.discard(task)  # type: ignore[arg-type]
        if not task.cancelled() and task.exception() is not None:
            log.error("discovery: on_change callback failed", exc_info=task.exception())

    async def _close(self) -> None:
        for task in list(self._resolving.values()):
            task.cancel()
        self._resolving.clear()
        self._unresolved.clear()
        if self._http is not None:
            with contextlib.suppress(Exception):
                await self._http.aclose()
            self._http = None
        if self._aiozc is not None:
            with contextlib.suppress(Exception):
                await self._aiozc.async_close()
            self._aiozc = None
        self._browser = None
        self._info = None
        self._tracked.clear()
        self._filters.clear()
        self._started = False
