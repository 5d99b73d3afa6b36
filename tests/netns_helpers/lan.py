"""A small LAN of network namespaces for tests that need real interfaces: one namespace per host,
each with an `eth0` veth plugged into a bridge that lives in one more namespace. Nothing touches
the machine's own interfaces. Needs root and `ip`."""

from __future__ import annotations

import os
import re
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


def remove_stale(prefix: str) -> None:
    """Delete namespaces an earlier run (a process id no longer alive) left behind when killed."""
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    for line in out.splitlines():
        name = line.split()[0] if line.split() else ""
        m = re.fullmatch(rf"{re.escape(prefix)}(\d+)-[0-9a-f]+-\w+", name)
        if m and not Path(f"/proc/{m.group(1)}").exists():
            subprocess.run(["ip", "netns", "del", name], capture_output=True)


@contextmanager
def bridged_lan(prefix: str, addresses: dict[str, str]) -> Iterator[dict[str, str]]:
    """Namespace `<prefix><pid>-<random>-<key>` for each key, its `eth0` at `addresses[key]`/24,
    all on one bridge. Yields {key: namespace name}; every namespace is deleted afterwards, also
    on failure."""
    remove_stale(prefix)
    tag = f"{prefix}{os.getpid()}-{uuid.uuid4().hex[:6]}"
    names = {k: f"{tag}-{k}" for k in ("br", *addresses)}
    created: list[str] = []
    try:
        for name in names.values():
            ip("netns", "add", name)
            created.append(name)
            ip("-n", name, "link", "set", "lo", "up")
        br = names["br"]
        ip("-n", br, "link", "add", "br0", "type", "bridge")
        ip("-n", br, "link", "set", "br0", "up")
        for i, (key, address) in enumerate(addresses.items()):
            ns = names[key]
            ip("-n", ns, "link", "add", "eth0", "type", "veth", "peer", "name", f"v{i}", "netns", br)
            ip("-n", br, "link", "set", f"v{i}", "master", "br0")
            ip("-n", br, "link", "set", f"v{i}", "up")
            ip("-n", ns, "addr", "add", f"{address}/24", "dev", "eth0")
            ip("-n", ns, "link", "set", "eth0", "up")
        yield {k: v for k, v in names.items() if k != "br"}
    finally:
        for name in reversed(created):
            subprocess.run(["ip", "netns", "del", name], capture_output=True)
