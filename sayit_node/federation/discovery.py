"""Find other SayIt nodes on the LAN over mDNS / DNS-SD, and tell which of them are alive.

Each node advertises one ``_sayit._tcp.local.`` service whose TXT record carries a
:class:`~.advert.NodeAdvert`, and browses for the same type. Discovery only *finds* peers;
whether a peer is alive is decided here by our own checks, never by zeroconf's cache: a node
that dies without sending its goodbye (SIGKILL, power loss, cable pulled) stays in every
browser's cache for ~1125 s. So every ``check_interval`` seconds each known peer gets
``GET http://{address}:{api_port}/api/health`` (or is vouched for by an optional external
liveness source such as Redis heartbeats); a peer with no evidence of life for ``dead_after``
seconds is reported ``"down"``, and after ``forget_after`` seconds it disappears from
:meth:`Discovery.peers` (it comes back by itself if it answers again). A clean stop sends mDNS
goodbyes, so peers drop it within milliseconds.

Only adverts signed with this cluster's key (and fresh) are acted on. One that fails is
ignored and logged once per sender -- never fatal; :meth:`Discovery.rejected` lists them, so
the node can say "another SayIt cluster at X -- check the secret".

Where discovery speaks (interfaces, advertised addresses, accepted sources) is decided in
:mod:`.mdns_binding`; keys derived from the cluster secret live in :mod:`.cluster_keys`; the
TXT record's encoding in :mod:`.advert`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import inspect
import ipaddress
import logging
import re
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any, Literal

import httpx
from zeroconf import DNSQuestionType, IPVersion, ServiceStateChange, Zeroconf
from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

from .advert import PROTOCOL_VERSION, RESIGN_SECONDS, SERVICE_TYPE, AdvertRejected, NodeAdvert
from .cluster_keys import ClusterKeys
from .mdns_binding import Binding, SourceFilter, local_ipv4_networks, resolve_binding, restrict_sockets

__all__ = ["PROTOCOL_VERSION", "SERVICE_TYPE", "Discovery", "NodeAdvert", "PeerRecord", "Rejected"]

log = logging.getLogger(__name__)

HEALTH_PATH = "/api/health"
_MAX_REJECTED = 64


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
    service_name: str
    last_error: str | None = None

    @property
    def node_id(self) -> str:
        return self.advert.node_id

    @property
    def base_url(self) -> str | None:
        """``http://address:api_port`` (IPv6 bracketed), or None without an address."""
        if not self.address:
            return None
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"http://{host}:{self.advert.api_port}"


@dataclass
class Rejected:
    """An advert this node ignored (logged once per sender)."""

    node_id: str | None
    service_name: str
    address: str | None  # from the service's A record: where the packet claims to be
    kind: str  # "foreign" | "stale" | "malformed"
    reason: str
    first_seen: float  # time.time()
    last_seen: float
    count: int = 1

    @property
    def message(self) -> str:
        where = self.address or "an unknown address"
        who = f"node {self.node_id!r}" if self.node_id else self.service_name
        if self.kind == "foreign":
            return (f"another SayIt cluster at {where} ({who}: {self.reason}) -- check the secret "
                    "(SAYIT_CLUSTER_SECRET) if it should be in this cluster")
        return f"ignored an advert from {who} at {where}: {self.reason}"

    def as_dict(self) -> dict[str, Any]:
        return {"nodeId": self.node_id, "address": self.address, "kind": self.kind, "reason": self.reason,
                "count": self.count, "message": self.message}


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
            service_name=self.service_name,
            last_error=self.last_error,
        )



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
        keys: ClusterKeys | None = None,
        resign_interval: float = RESIGN_SECONDS,
        liveness_source: LivenessSource | None = None,
        check_interval: float = 1.0,
        check_timeout: float = 1.0,
        dead_after: float = 6.0,
        forget_after: float = 60.0,
    ) -> None:
        if forget_after < dead_after:
            raise ValueError("forget_after must be >= dead_after")
        self._advert_in = advert
        self.keys = keys if keys is not None else ClusterKeys.derive(None)
        self.resign_interval = resign_interval
        self.bind_host = bind_host
        self.on_change = on_change
        self.liveness_source = liveness_source
        self.check_interval = check_interval
        self.check_timeout = check_timeout
        self.dead_after = dead_after
        self.forget_after = forget_after

        self._binding: Binding | None = None
        self._aiozc: AsyncZeroconf | None = None
        self._browser: AsyncServiceBrowser | None = None
        self._info: AsyncServiceInfo | None = None
        self._http: httpx.AsyncClient | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._resolving: dict[str, asyncio.Task[Any]] = {}
        self._unresolved: set[str] = set()
        self._tracked: dict[str, _Tracked] = {}
        self._liveness_task: asyncio.Task[None] | None = None
        self._resign_task: asyncio.Task[None] | None = None
        self._newest: dict[str, int] = {}  # node id -> latest signed_at accepted
        self._rejected: dict[tuple[str, str], Rejected] = {}
        self._filters: list[SourceFilter] = []
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

    def rejected(self) -> list[Rejected]:
        """Adverts ignored since start, one entry per sender (node id or service, address)."""
        return list(self._rejected.values())

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
        binding = resolve_binding(self.bind_host)
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
                self._filters = restrict_sockets(aiozc.zeroconf, binding.allowed)
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
            if not self.keys.open:
                self._resign_task = asyncio.create_task(self._resign_loop(), name="sayit-discovery-resign")
            self._started = True
            log.info(
                "discovery: advertising %s as %s on %s (%s)",
                advert.node_id, self._info.name, ",".join(binding.addresses),
                "open cluster, unsigned" if self.keys.open else "signed with the cluster key",
            )
        except BaseException:
            await self._close()
            raise

    async def stop(self) -> None:
        """Send the mDNS goodbye (so peers drop us at once) and close everything."""
        if self._aiozc is None:
            return
        self._started = False
        for task in (self._liveness_task, self._resign_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        self._liveness_task = self._resign_task = None
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

        Peers get an "updated" event within ~a second. ``node_id`` should not change while
        running (stop and start a new Discovery instead). Called without changes, it re-signs.
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
            properties=advert.to_properties(self.keys),
            server=server,
            parsed_addresses=list(self._binding.addresses),
        )

    async def _resign_loop(self) -> None:
        """A signature is accepted for MAX_SKEW_SECONDS: re-sign well before that."""
        while True:
            await asyncio.sleep(self.resign_interval)
            try:
                await self.update_advert()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("discovery: re-signing the advert failed: %s", exc)

    # -- zeroconf plumbing --------------------------------------------------------------------

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
        props = info.properties or {}
        raw_id = props.get(b"id")
        claimed = raw_id.decode("utf-8", "replace") if isinstance(raw_id, bytes) else None
        if claimed == self._advert_in.node_id:
            return  # our own advert (or a copy of it)
        try:
            advert = NodeAdvert.from_properties(props, self.keys, newest=self._newest.get(claimed or "", 0))
        except AdvertRejected as exc:
            self._reject(name, info, exc)
            if name in self._tracked:  # a service we trusted now says something else
                self._forget_service(name)
            return
        if not self.keys.open:
            self._newest[advert.node_id] = max(self._newest.get(advert.node_id, 0), advert.signed_at)
        self._upsert(name, advert)

    def _reject(self, name: str, info: AsyncServiceInfo, exc: AdvertRejected) -> None:
        addresses = info.parsed_addresses(IPVersion.V4Only)
        address = addresses[0] if addresses else None
        key = (exc.node_id or name, address or "")
        now = time.time()
        entry = self._rejected.get(key)
        if entry is not None:
            entry.count += 1
            entry.last_seen = now
            return
        if len(self._rejected) >= _MAX_REJECTED:  # a flood of forged adverts: stop logging
            if len(self._rejected) == _MAX_REJECTED:
                log.warning("discovery: more than %d senders of bad adverts; not logging more", _MAX_REJECTED)
                self._rejected[("", "")] = Rejected(node_id=None, service_name="(more)", address=None,
                                                    kind="malformed", reason="too many senders",
                                                    first_seen=now, last_seen=now)
            return
        entry = Rejected(node_id=exc.node_id, service_name=name, address=address, kind=exc.kind,
                         reason=str(exc), first_seen=now, last_seen=now)
        self._rejected[key] = entry
        log.warning("discovery: %s", entry.message)

    def _upsert(self, name: str, advert: NodeAdvert) -> None:
        own = self._advert_in
        if advert.node_id == own.node_id:
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
        changed = not t.advert.same_content(advert)
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
        local_nets = [n.network for n in local_ipv4_networks() if not n.ip.is_loopback]

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
            resp = await self._http.get(url + HEALTH_PATH)
        except httpx.HTTPError as exc:
            if len(t.addresses) > 1:
                t.addr_index += 1  # try the peer's next address next round
            return False, f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        if not 200 <= resp.status_code < 300:
            return False, f"HTTP {resp.status_code}"
        # A different node now answering on that address/port is not our peer.
        with contextlib.suppress(ValueError):
            body = resp.json()
            # /api/health names the node as "nodeId" (see sayit_node.client.Health)
            if isinstance(body, dict) and body.get("nodeId") not in (None, t.advert.node_id):
                return False, f"answered by node {body.get('nodeId')!r}"
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
        self._newest.clear()
        self._filters.clear()
        self._started = False
