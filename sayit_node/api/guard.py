"""Browser protection: the node answers only under its own names, and state changes only same-origin.

The threat is a web page in the user's browser. It can send CORS-"simple" requests (a POST
with a text/plain or form body) to any address, loopback included, without a preflight; and
through DNS rebinding (a name of the attacker's that later resolves to 127.0.0.1) it can even
read the answers, because the browser thinks it talks to the attacker's own site. So:

* ``Host`` must be one of the node's own names or addresses (else 421): a rebound name never is.
* A state-changing request (POST, PUT, PATCH, DELETE) that a browser marks as coming from
  another site (``Origin`` not the origin it was sent to, or ``Sec-Fetch-Site: cross-site``)
  is refused with 403, unless its origin is listed in ``ALLOWED_ORIGINS``. Programs (the CLI,
  the tray, SDKs, curl) send neither header and pass.

``POST /api/shutdown`` additionally needs a request no page can send cross-site without a
preflight (see ``system.py``).
"""

from __future__ import annotations

import ipaddress
import socket
import time
from urllib.parse import urlsplit

import psutil
from litestar.types import ASGIApp, Receive, Scope, Send

from ..config import Settings
from .errors import ApiError

STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
WILDCARD_BINDS = ("0.0.0.0", "::", "")
INTERFACE_REFRESH = 5.0  # seconds: addresses come and go (DHCP, VPN); re-read on a miss at most this often


def split_host(value: str) -> tuple[str, int | None]:
    """'Name:3000' -> ('name', 3000); '[::1]:3000' -> ('::1', 3000); a bad port -> ('', None)."""
    value = value.strip().lower()
    if value.startswith("["):
        host, _, rest = value[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    elif value.count(":") == 1:
        host, _, port = value.partition(":")
    else:  # a name, or a bare IPv6 address
        host, port = value, ""
    if port and not port.isdigit():
        return "", None
    return host.rstrip("."), int(port) if port else None


def _interface_addresses() -> set[str]:
    out = set()
    for addresses in psutil.net_if_addrs().values():
        for address in addresses:
            if address.family in (socket.AF_INET, socket.AF_INET6):
                out.add(address.address.split("%")[0].lower())  # drop an IPv6 zone id
    return out


class HostGuard:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.any_host = "*" in settings.allowed_hosts
        self.any_origin = "*" in settings.allowed_origins
        self.allowed_origins = {o.rstrip("/").lower() for o in settings.allowed_origins}
        hostname = socket.gethostname().lower()
        short = hostname.split(".")[0]
        self.names = {"localhost", "127.0.0.1", "::1", split_host(settings.host)[0] or settings.host,
                      hostname, short, f"{short}.local", f"{hostname}.local"}
        self.names |= {split_host(h)[0] for h in settings.allowed_hosts}
        self.bound_to_all = settings.host in WILDCARD_BINDS
        self._interfaces: set[str] = set()
        self._interfaces_at = -INTERFACE_REFRESH
        if self.bound_to_all:
            self._refresh_interfaces()

    def _refresh_interfaces(self) -> None:
        self._interfaces = _interface_addresses()
        self._interfaces_at = time.monotonic()

    def host_allowed(self, host: str) -> bool:
        if self.any_host or host in self.names:
            return True
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        if address.is_loopback:
            return True
        if not self.bound_to_all:
            return False
        if host not in self._interfaces and time.monotonic() - self._interfaces_at > INTERFACE_REFRESH:
            self._refresh_interfaces()
        return host in self._interfaces

    def origin_allowed(self, origin: str, host_header: str, scheme: str) -> bool:
        """Same origin as the URL the request was sent to, or listed in ALLOWED_ORIGINS."""
        if self.any_origin or origin.rstrip("/").lower() in self.allowed_origins:
            return True
        try:
            parts = urlsplit(origin)
            origin_port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
        except ValueError:
            return False
        host, port = split_host(host_header)
        # Behind a TLS proxy the node sees http; the browser's origin says https.
        port = port or {"http": 80, "https": 443}.get(parts.scheme if parts.scheme in ("http", "https") else scheme)
        return bool(host) and parts.hostname == host and origin_port == port

    def check(self, method: str, headers: dict[str, str], scheme: str) -> None:
        host_header = headers.get("host", "")
        host, _ = split_host(host_header)
        if not self.host_allowed(host):
            shown = host_header[:100]
            raise ApiError(421, f"this node does not answer to the host name '{shown}'; if that name is yours, "
                                "add it to ALLOWED_HOSTS", "host_not_allowed")
        if method not in STATE_CHANGING:
            return
        origin = headers.get("origin")
        fetch_site = headers.get("sec-fetch-site", "").lower()
        if origin is not None:
            if not self.origin_allowed(origin, host_header, scheme):
                raise ApiError(403, f"requests from the web page at '{origin[:100]}' are not allowed to change "
                                    "anything here; add its origin to ALLOWED_ORIGINS to allow it",
                               "cross_origin_forbidden")
        elif fetch_site == "cross-site":
            raise ApiError(403, "cross-site requests are not allowed to change anything here",
                           "cross_origin_forbidden")


def host_guard_middleware(settings: Settings):
    """An ASGI middleware factory for Litestar's `middleware=[...]`."""
    guard = HostGuard(settings)

    def factory(app: ASGIApp) -> ASGIApp:
        async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] == "http":
                headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
                guard.check(scope["method"], headers, scope.get("scheme", "http"))
            await app(scope, receive, send)

        return middleware

    return factory
