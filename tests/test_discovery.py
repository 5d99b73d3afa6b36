"""mDNS discovery between real processes, isolated from the machine's network.

Every node runs as a separate process (tests/netns_helpers/discovery_node.py) inside a network
namespace this test created: either a fresh `unshare -n` namespace (loopback only; entered
with `nsenter`), or a pair of `ip netns` namespaces joined by a bridge that lives in a third
namespace. Nothing is ever sent on the machine's own interfaces, and every namespace is
removed afterwards, also on failure. Needs root (skipped otherwise).

Timings are printed (run with `-s` to see them); asserts use generous bounds.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import replace
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from sayit_node.federation.advert import PROTOCOL_VERSION, AdvertRejected, NodeAdvert
from sayit_node.federation.cluster_keys import ClusterKeys, derive_redis_password
from tests.netns_helpers.lan import bridged_lan

REPO = Path(__file__).resolve().parents[1]
HELPERS = Path(__file__).resolve().parent / "netns_helpers"
NODE = str(HELPERS / "discovery_node.py")
TOOLS = str(HELPERS / "mdns_tools.py")
NETNS_PREFIX = "sayit-t"


@functools.cache
def _netns_capable() -> bool:
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return False
    if not all(shutil.which(tool) for tool in ("unshare", "nsenter", "ip")):
        return False
    try:
        res = subprocess.run(["unshare", "-n", "--", "true"], timeout=10, capture_output=True)
    except (OSError, subprocess.SubprocessError):
        return False
    return res.returncode == 0


pytestmark = [
    pytest.mark.skipif(
        not sys.platform.startswith("linux") or not _netns_capable(),
        reason="needs Linux, root, unshare/nsenter/ip: nodes run in private network namespaces",
    ),
    pytest.mark.timeout(60),
]


# --- process plumbing -----------------------------------------------------------------------


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["PYTHONUNBUFFERED"] = "1"
    return env


class Proc:
    """A child process printing JSON lines; events are collected by a reader thread."""

    def __init__(self, label: str, argv: list[str]) -> None:
        self.label = label
        self.argv = argv
        self.stderr = tempfile.TemporaryFile(mode="w+")
        self.spawned = time.time()
        self.popen = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=self.stderr, text=True, env=_env()
        )
        self.events: list[dict] = []
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            try:
                event = json.loads(line)
            except ValueError:
                event = {"event": "text", "text": line.rstrip()}
            with self._cond:
                self.events.append(event)
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def wait_for(self, pred: Callable[[dict], bool], timeout: float, what: str = "") -> dict:
        deadline = time.monotonic() + timeout
        with self._cond:
            seen = 0
            while True:
                for event in self.events[seen:]:
                    if pred(event):
                        return event
                seen = len(self.events)
                left = deadline - time.monotonic()
                if left <= 0 or (self.popen.poll() is not None and not self._thread.is_alive()):
                    break
                self._cond.wait(min(left, 0.2))
        raise AssertionError(
            f"{self.label}: timed out after {timeout}s waiting for {what or pred}\n{self.dump()}"
        )

    def peer_events(self, peer: str | None = None) -> list[dict]:
        with self._cond:
            return [
                e for e in self.events
                if e.get("event") == "peer" and (peer is None or e.get("peer") == peer)
            ]

    def dump(self) -> str:
        self.stderr.seek(0)
        err = self.stderr.read()[-4000:]
        with self._cond:
            events = "\n".join(json.dumps(e) for e in self.events[-40:])
        return f"--- {self.label} argv={self.argv}\nexit={self.popen.poll()}\nstdout:\n{events}\nstderr:\n{err}"

    def signal(self, sig: int) -> float:
        at = time.time()
        self.popen.send_signal(sig)
        return at

    def close(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
        try:
            self.popen.wait(5)
        except subprocess.TimeoutExpired:  # pragma: no cover
            pass
        self.stderr.close()


class Net:
    """Runs processes inside one network namespace, given the argv prefix that enters it."""

    def __init__(self, name: str, enter: list[str]) -> None:
        self.name = name
        self.enter = enter
        self.procs: list[Proc] = []

    def spawn(self, label: str, argv: list[str]) -> Proc:
        proc = Proc(f"{label}@{self.name}", self.enter + argv)
        self.procs.append(proc)
        return proc

    def node(self, node_id: str, bind: str, api_port: int, *extra: str) -> Proc:
        return self.spawn(node_id, [sys.executable, NODE, "--node-id", node_id, "--bind", bind,
                                    "--api-port", str(api_port), *extra])

    def run(self, argv: list[str], timeout: float = 10) -> subprocess.CompletedProcess:
        return subprocess.run(self.enter + argv, capture_output=True, text=True, env=_env(),
                              timeout=timeout)

    def close(self) -> None:
        for proc in self.procs:
            proc.close()


@pytest.fixture
def lo_ns() -> Iterator[Net]:
    """A fresh `unshare -n` namespace with only `lo`, brought up; nodes join it via nsenter."""
    holder = subprocess.Popen(
        ["unshare", "-n", "--", "sh", "-c", "ip link set lo up && echo up && exec sleep 600"],
        stdout=subprocess.PIPE, text=True,
    )
    net = Net("unshare", ["nsenter", f"--net=/proc/{holder.pid}/ns/net", "--"])
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "up"
        yield net
    finally:
        net.close()
        holder.kill()
        holder.wait(5)


@pytest.fixture
def lan() -> Iterator[dict[str, Net]]:
    """Namespaces `a` (10.200.0.1/24) and `b` (10.200.0.2/24), each with an `eth0` veth
    plugged into a bridge that lives in a third namespace. Deleted afterwards."""
    with bridged_lan(NETNS_PREFIX, {"a": "10.200.0.1", "b": "10.200.0.2"}) as names:
        nets = {key: Net(key, ["ip", "netns", "exec", ns]) for key, ns in names.items()}
        try:
            yield nets
        finally:
            for net in nets.values():
                net.close()


def _saw(proc: Proc, peer: str, change: str = "added", **match) -> Callable[[dict], bool]:
    def pred(e: dict) -> bool:
        return (
            e.get("event") == "peer" and e.get("peer") == peer and e.get("change") == change
            and all(e.get(k) == v for k, v in match.items())
        )
    return pred


def _ready(e: dict) -> bool:
    return e.get("event") == "ready"


def _start_entry(*ready: dict) -> float:
    """When the later of these nodes called Discovery.start() (interpreter start excluded)."""
    return max(r["t"] - r["start_seconds"] for r in ready)


# --- pure functions (no network) ------------------------------------------------------------


def test_cluster_keys_are_separate_per_purpose():
    open_keys = ClusterKeys.derive(None)
    assert open_keys.open and open_keys.redis_password is None and ClusterKeys.derive("").open
    keys = ClusterKeys.derive(SECRET)
    assert not keys.open and keys.advert_key is not None
    assert re.fullmatch(r"[0-9a-f]{64}", keys.redis_password)
    assert keys.advert_key.hex() != keys.redis_password  # one key tells nothing of the other
    assert keys == ClusterKeys.derive(SECRET) != ClusterKeys.derive(SECRET + "x")
    assert derive_redis_password(SECRET) == keys.redis_password
    assert "advert_key" not in repr(keys) and keys.redis_password not in repr(keys)


SECRET = "violin-ranger-crisply-outdoors-geology-unpaved-sixtieth"
ADVERT = NodeAdvert(node_id="n-1", name="Küche PC", version="0.1.0", engine="mlx", model="base",
                    cores=8, api_port=3000, hosts_redis=True, redis_port=6390,
                    cert_fingerprint="ab" * 32, addresses=("192.168.1.5",))


def test_advert_sign_and_verify_round_trip():
    keys = ClusterKeys.derive(SECRET)
    props = ADVERT.to_properties(keys, now=1_000_000)
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in props.items())
    assert max(len(k) for k in props) <= 2 and all(len(k) + len(v) < 255 for k, v in props.items())
    assert SECRET not in "".join(props.values()) and keys.redis_password not in "".join(props.values())
    wire = {k.encode(): v.encode() for k, v in props.items()}  # as zeroconf hands them over
    back = NodeAdvert.from_properties(wire, keys, now=1_000_030)
    assert back == replace(ADVERT, signed_at=1_000_000) and back.same_content(ADVERT)
    assert back.protocol == PROTOCOL_VERSION
    no_redis = NodeAdvert(node_id="x", api_port=1)
    assert "rp" not in no_redis.to_properties(keys)
    assert NodeAdvert.from_properties(no_redis.to_properties(keys), keys).redis_port is None
    with pytest.raises(AdvertRejected) as exc:
        NodeAdvert.from_properties({b"foo": b"bar"}, keys)
    assert exc.value.kind == "malformed"


@pytest.mark.parametrize("field, value", [
    ("a", "10.9.9.9"),            # the impostor's address instead of the node's
    ("ap", "3001"), ("rp", "6391"), ("r", "0"), ("fp", "cd" * 32), ("id", "n-2"),
    ("n", "Kitchen"), ("p", "3"), ("t", "1000001"), ("k", "open"), ("s", "A" * 43),
])
def test_advert_tampering_any_field_is_rejected(field, value):
    keys = ClusterKeys.derive(SECRET)
    props = ADVERT.to_properties(keys, now=1_000_000)
    assert props[field] != value
    props[field] = value
    with pytest.raises(AdvertRejected) as exc:
        NodeAdvert.from_properties(props, keys, now=1_000_000)
    assert exc.value.kind == "foreign"


def test_advert_extra_or_missing_field_is_rejected():
    keys = ClusterKeys.derive(SECRET)
    props = ADVERT.to_properties(keys, now=1_000_000)
    for changed in ({**props, "x": "1"}, {k: v for k, v in props.items() if k != "fp"}):
        with pytest.raises(AdvertRejected):
            NodeAdvert.from_properties(changed, keys, now=1_000_000)


def test_advert_freshness_and_replay():
    keys = ClusterKeys.derive(SECRET)
    old = ADVERT.to_properties(keys, now=1_000_000)
    assert NodeAdvert.from_properties(old, keys, now=1_000_000 + 299).signed_at == 1_000_000
    assert NodeAdvert.from_properties(old, keys, now=1_000_000 - 299).signed_at == 1_000_000  # clock skew
    for now in (1_000_000 + 301, 1_000_000 - 301):
        with pytest.raises(AdvertRejected) as exc:
            NodeAdvert.from_properties(old, keys, now=now)
        assert exc.value.kind == "stale"
    # replayed: older than one already accepted from the same node (both within the window)
    with pytest.raises(AdvertRejected) as exc:
        NodeAdvert.from_properties(old, keys, now=1_000_100, newest=1_000_060)
    assert exc.value.kind == "stale" and "replayed" in str(exc.value)
    assert NodeAdvert.from_properties(old, keys, now=1_000_100, newest=1_000_000).signed_at == 1_000_000


def test_other_cluster_and_open_adverts_are_foreign():
    mine, theirs, open_keys = ClusterKeys.derive(SECRET), ClusterKeys.derive(SECRET + "-b"), ClusterKeys.derive(None)
    for signer, reader in ((theirs, mine), (open_keys, mine), (mine, open_keys)):
        with pytest.raises(AdvertRejected) as exc:
            NodeAdvert.from_properties(ADVERT.to_properties(signer), reader)
        assert exc.value.kind == "foreign" and exc.value.node_id == "n-1"
    open_props = ADVERT.to_properties(open_keys)
    assert "s" not in open_props and "t" not in open_props
    assert NodeAdvert.from_properties(open_props, open_keys).same_content(ADVERT)


# --- real processes in private namespaces ---------------------------------------------------


def test_two_nodes_on_loopback_see_each_other(lo_ns: Net):
    a = lo_ns.node("A", "127.0.0.1", 18001)
    b = lo_ns.node("B", "127.0.0.1", 18002)
    ea = a.wait_for(_saw(a, "B", address="127.0.0.1", compatible=True), 10, "A sees B")
    eb = b.wait_for(_saw(b, "A", address="127.0.0.1", compatible=True), 10, "B sees A")
    ra, rb = a.wait_for(_ready, 5), b.wait_for(_ready, 5)
    assert ra["addresses"] == rb["addresses"] == ["127.0.0.1"]
    spawn, began = max(a.spawned, b.spawned), _start_entry(ra, rb)
    both = max(ea["t"], eb["t"])
    print(f"\n[discovery] loopback: both see each other {both - began:.2f}s after the later "
          f"start() call ({both - spawn:.2f}s after process spawn; start() took "
          f"{ra['start_seconds']}s / {rb['start_seconds']}s)")
    assert both - began < 5


def test_killed_peer_goes_down_despite_zeroconf_cache(lo_ns: Net):
    a = lo_ns.node("A", "127.0.0.1", 18001)
    b = lo_ns.node("B", "127.0.0.1", 18002, "--forget-after", "7")  # dead_after: default 6 s
    b.wait_for(_saw(b, "A"), 10, "B sees A")
    time.sleep(1.5)  # a few successful health checks first
    assert not [e for e in b.peer_events("A") if e["change"] != "added"], b.dump()
    killed = a.signal(signal.SIGKILL)
    down = b.wait_for(_saw(b, "A", "down"), 10, "A reported down")
    removed = b.wait_for(_saw(b, "A", "removed"), 10, "A removed")
    print(f"\n[discovery] SIGKILLed peer: down after {down['t'] - killed:.2f}s, removed from "
          f"peers() after {removed['t'] - killed:.2f}s; still in zeroconf cache: "
          f"{down['in_zeroconf_cache']}/{removed['in_zeroconf_cache']}")
    assert down["t"] - killed < 10
    assert removed["t"] - killed < 10
    assert "A" not in removed["peers"]
    # the liveness checks did this, not mDNS: zeroconf still caches the dead service
    assert down["in_zeroconf_cache"] and removed["in_zeroconf_cache"]


def test_stopped_peer_sends_goodbye(lo_ns: Net):
    a = lo_ns.node("A", "127.0.0.1", 18001)
    b = lo_ns.node("B", "127.0.0.1", 18002)
    b.wait_for(_saw(b, "A"), 10, "B sees A")
    termed = a.signal(signal.SIGTERM)
    gone = b.wait_for(_saw(b, "A", "removed"), 5, "A removed after goodbye")
    a.wait_for(lambda e: e.get("event") == "stopped", 5, "A stopped")
    assert a.popen.wait(5) == 0
    print(f"\n[discovery] SIGTERM (graceful stop): peer removed after {gone['t'] - termed:.3f}s")
    assert gone["t"] - termed < 3  # far below dead_after (6 s): the goodbye, not liveness
    assert not [e for e in b.peer_events("A") if e["change"] == "down"]


def test_external_liveness_source_and_advert_update(lo_ns: Net):
    # B serves no /api/health. A trusts an external source (think Redis heartbeats) that
    # vouches for B; C has no such source and must report B down.
    a = lo_ns.node("A", "127.0.0.1", 18001, "--dead-after", "2", "--trust", "B")
    b = lo_ns.node("B", "127.0.0.1", 18002, "--no-health")
    c = lo_ns.node("C", "127.0.0.1", 18003, "--dead-after", "2")
    a.wait_for(_saw(a, "B"), 10, "A sees B")
    c.wait_for(_saw(c, "B"), 10, "C sees B")
    c.wait_for(_saw(c, "B", "down"), 5, "C reports B down (no health endpoint)")
    b.wait_for(_ready, 5)
    sent = b.signal(signal.SIGUSR1)  # B starts hosting Redis and re-announces
    upd = a.wait_for(_saw(a, "B", "updated", hosts_redis=True, redis_port=6379), 5,
                     "A sees B's new advert")
    print(f"\n[discovery] advert update seen after {upd['t'] - sent:.3f}s")
    assert not [e for e in a.peer_events("B") if e["change"] in ("down", "removed")], a.dump()


def test_address_answered_by_another_node_is_down(lo_ns: Net):
    # B's address/port is now served by a node that calls itself Z (/api/health "nodeId").
    a = lo_ns.node("A", "127.0.0.1", 18001, "--dead-after", "2")
    lo_ns.node("B", "127.0.0.1", 18002, "--answer-as", "Z")
    a.wait_for(_saw(a, "B"), 10, "A sees B")
    down = a.wait_for(_saw(a, "B", "down"), 6, "B reported down: another node answers there")
    assert "Z" in a.dump() or down["state"] == "down"


def test_other_cluster_is_not_listed_but_reported_other_protocol_is_flagged(lo_ns: Net):
    a = lo_ns.node("A", "127.0.0.1", 18001, "--secret", SECRET)
    b = lo_ns.node("B", "127.0.0.1", 18002, "--secret", SECRET)
    c = lo_ns.node("C", "127.0.0.1", 18003, "--secret", SECRET + "-other")
    d = lo_ns.node("D", "127.0.0.1", 18004, "--secret", SECRET, "--protocol",
                   str(PROTOCOL_VERSION + 1))
    a.wait_for(_saw(a, "B", compatible=True), 10, "A sees B")
    a.wait_for(_saw(a, "D", compatible=False), 10, "A sees D flagged incompatible")
    d.wait_for(_saw(d, "A", compatible=False), 10, "D sees A flagged incompatible")
    told = a.wait_for(lambda e: e.get("event") == "rejected" and e.get("peer") == "C", 10,
                      "A reports C as another cluster")
    assert told["kind"] == "foreign" and "another SayIt cluster at 127.0.0.1" in told["message"]
    assert "check the secret" in told["message"]
    c.wait_for(lambda e: e.get("event") == "rejected" and e.get("peer") == "A", 10, "C reports A")
    time.sleep(1.5)
    assert not a.peer_events("C") and not b.peer_events("C"), a.dump() + b.dump()
    assert not c.peer_events(), c.dump()
    a.signal(signal.SIGTERM)
    a.popen.wait(5)
    a.stderr.seek(0)
    log = a.stderr.read()
    assert log.count("another SayIt cluster at") == 1, log  # logged once, not per resolve


def test_advert_is_resigned_and_stays_fresh(lo_ns: Net):
    a = lo_ns.node("A", "127.0.0.1", 18001, "--secret", SECRET, "--resign", "1")
    b = lo_ns.node("B", "127.0.0.1", 18002, "--secret", SECRET)
    first = b.wait_for(_saw(b, "A"), 10, "B sees A")
    time.sleep(3.5)
    # re-signed adverts are not news: no "updated" events, but B keeps the newest signature
    assert [e["change"] for e in b.peer_events("A")] == ["added"], b.dump()
    assert first["signed_at"] > 0
    assert not [e for e in b.events if e.get("event") == "rejected"], b.dump()
    a.signal(signal.SIGUSR1)  # a real change is news
    upd = b.wait_for(_saw(b, "A", "updated", hosts_redis=True), 5, "B sees A's change")
    assert upd["signed_at"] > first["signed_at"]


def test_joiner_starts_alone_when_the_advertised_redis_fails(lo_ns: Net, tmp_path):
    # A correctly signed advert names a Redis that does not answer (host gone, port closed): a
    # real node must skip it and start (it used to exit: "cannot use the cluster's Redis").
    lo_ns.node("H", "127.0.0.1", 18001, "--secret", SECRET, "--hosts-redis", f"18379:{'ab' * 32}")
    env = {"SAYIT_CLUSTER_SECRET": SECRET, "SAYIT_ENGINE": "simulated", "SAYIT_DISCOVERY": "on",
           "HOST": "127.0.0.1", "PORT": "18002", "MAX_CONCURRENT_CHUNKS": "1",
           "SAYIT_DATA_DIR": str(tmp_path / "data"), "SAYIT_LOG_DIR": str(tmp_path / "logs"),
           "SAYIT_CONFIG_FILE": str(tmp_path / "config.toml")}
    node = lo_ns.spawn("J", ["env", *(f"{k}={v}" for k, v in env.items()), sys.executable, "-m", "sayit_node", "serve"])
    skipped = node.wait_for(lambda e: "not joining the Redis advertised by" in e.get("text", ""), 30,
                            "the joiner skips the dead Redis")
    assert "127.0.0.1:18379" in skipped["text"]
    node.wait_for(lambda e: "ready in standalone mode" in e.get("text", ""), 30, "the joiner starts alone")
    assert node.popen.poll() is None


def test_nodes_in_two_namespaces_over_a_bridge(lan: dict[str, Net]):
    opts = ("--dead-after", "2", "--forget-after", "5")
    a = lan["a"].node("A", "10.200.0.1", 18001, *opts)
    b = lan["b"].node("B", "10.200.0.2", 18002, *opts)
    c = lan["b"].node("C", "0.0.0.0", 18003, *opts)  # all interfaces: advertises 10.200.0.2
    ea = a.wait_for(_saw(a, "B", address="10.200.0.2"), 10, "A sees B")
    eb = b.wait_for(_saw(b, "A", address="10.200.0.1"), 10, "B sees A")
    a.wait_for(_saw(a, "C", address="10.200.0.2"), 10, "A sees C")
    c.wait_for(_saw(c, "A", address="10.200.0.1"), 10, "C sees A")
    ra, rb, rc = (p.wait_for(_ready, 5) for p in (a, b, c))
    assert ra["addresses"] == ["10.200.0.1"] and rc["addresses"] == ["10.200.0.2"]
    both = max(ea["t"], eb["t"]) - _start_entry(ra, rb)
    print(f"\n[discovery] across the bridge: A and B see each other {both:.2f}s after the "
          f"later start() call")
    assert both < 5
    time.sleep(3)  # > dead_after: health checks across the bridge keep everyone up
    for proc in (a, b, c):
        assert {e["change"] for e in proc.peer_events()} == {"added"}, proc.dump()
    assert {e["peer"] for e in a.peer_events()} == {"B", "C"}


def test_loopback_node_sends_nothing_on_the_lan(lan: dict[str, Net]):
    ns_a, ns_b = lan["a"], lan["b"]
    cap = ns_a.spawn("capture", [sys.executable, TOOLS, "capture", "eth0"])
    cap.wait_for(_ready, 5, "capture ready")

    def packets(**match) -> list[dict]:
        return [e for e in cap.events if e.get("event") == "packet"
                and all(e.get(k) == v for k, v in match.items())]

    # 1. two loopback nodes in namespace a talk to each other on lo: nothing on eth0
    lo1 = ns_a.node("L1", "127.0.0.1", 18001)
    lo2 = ns_a.node("L2", "127.0.0.1", 18002)
    lo1.wait_for(_saw(lo1, "L2"), 10, "L1 sees L2")
    lo2.wait_for(_saw(lo2, "L1"), 10, "L2 sees L1")
    time.sleep(1.0)
    assert packets() == [], cap.dump()

    # 2. provoke it: a program in a joins the mDNS group on eth0 (as avahi would), and b asks
    #    for _sayit._tcp by unicast to 10.200.0.1, by legacy multicast and by QU multicast.
    joiner = ns_a.spawn("joiner", [sys.executable, TOOLS, "join", "10.200.0.1"])
    joiner.wait_for(_ready, 5, "joined")
    res = ns_b.run([sys.executable, TOOLS, "probe", "10.200.0.1", "10.200.0.2"])
    assert res.returncode == 0, res.stderr
    probe = json.loads(res.stdout.strip().splitlines()[-1])
    time.sleep(0.5)
    assert packets(src="10.200.0.2"), "capture saw the probe's queries: " + cap.dump()
    assert probe["replies"] == [], probe
    assert packets(src="10.200.0.1") == [], cap.dump()

    # 3. control: nodes bound to the LAN addresses do speak on eth0, and find each other
    m = ns_a.node("M", "10.200.0.1", 18003)
    n = ns_b.node("N", "10.200.0.2", 18004)
    n.wait_for(_saw(n, "M", address="10.200.0.1"), 10, "N sees M")
    m.wait_for(_saw(m, "N", address="10.200.0.2"), 10, "M sees N")
    out = packets(src="10.200.0.1", outgoing=True)
    print(f"\n[discovery] eth0 capture: 0 packets from the loopback nodes, "
          f"{len(out)} from the node bound to 10.200.0.1")
    assert out, cap.dump()
    time.sleep(0.5)
    for proc in (lo1, lo2):  # loopback nodes never see LAN nodes, nor LAN nodes them
        assert {e["peer"] for e in proc.peer_events()} <= {"L1", "L2"}, proc.dump()
    for proc in (m, n):
        assert {e["peer"] for e in proc.peer_events()} <= {"M", "N"}, proc.dump()
