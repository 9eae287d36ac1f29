"""Where the image downloader may connect: the SSRF policy.

Image URLs come from search results, i.e. from strangers. Before any connection the URL
must be http(s) without credentials, on an allowed port, and *every* address its host
resolves to must be public (not loopback, private, link-local such as the cloud metadata
address 169.254.169.254, CGNAT, multicast, reserved or unspecified), after unwrapping
IPv6 forms that embed an IPv4 address (IPv4-mapped, NAT64, 6to4, Teredo). The address a
connection actually reached is checked again against the same policy (DNS rebinding).

Loopback and private hosts are refused by default. Tests (and users with a trusted local
image host) allow them explicitly with ``host:port`` pairs; nothing wider exists.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Awaitable[list[str]]]

DEFAULT_PORTS: frozenset[int] = frozenset({80, 443, 8080, 8443})

_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))
_CGNAT = ipaddress.ip_network("100.64.0.0/10")


class BlockedURL(ValueError):
    """A URL or address the policy refuses; the message says which rule."""


async def system_resolver(host: str, port: int) -> list[str]:
    """All addresses ``host`` resolves to, via the event loop's ``getaddrinfo``."""
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise BlockedURL(f"cannot resolve host {host!r} ({exc.strerror or exc})") from None
    return sorted({str(info[4][0]) for info in infos})


def embedded_ipv4(ip: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries (mapped, NAT64, 6to4, Teredo), if any."""
    if not isinstance(ip, ipaddress.IPv6Address):
        return None
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    for net in _NAT64:
        if ip in net:
            return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    return None


def address_problem(ip: IPAddress) -> str | None:
    """Why ``ip`` is not a public unicast address, or None when it is."""
    inner = embedded_ipv4(ip)
    if inner is not None:
        reason = address_problem(inner)
        return f"{reason} (embedded in {ip})" if reason else None
    if isinstance(ip, ipaddress.IPv6Address) and ip.scope_id:
        return f"{ip} is scoped"
    checks = (
        (ip.is_unspecified, "unspecified"),
        (ip.is_loopback, "loopback"),
        (ip.is_link_local, "link-local (cloud metadata range)"),
        (ip.is_multicast, "multicast"),
        (isinstance(ip, ipaddress.IPv4Address) and ip in _CGNAT, "carrier-grade NAT"),
        (ip.is_private, "private"),
        (ip.is_reserved, "reserved"),
        (not ip.is_global, "not globally routable"),
    )
    for bad, what in checks:
        if bad:
            return f"{ip} is {what}"
    return None


def _parse_hostport(entry: str) -> tuple[str, int]:
    text = entry.strip()
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"allow-list entry {entry!r} must be 'host:port', e.g. '127.0.0.1:8080' or '[::1]:8080'")
    return _norm_host(host), int(port)


@lru_cache(maxsize=4096)
def _norm_host(host: str) -> str:
    host = host.strip().lower().rstrip(".")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return host


@dataclass(frozen=True)
class NetPolicy:
    """The connection policy of the downloader.

    ``allow_hosts`` holds exact ``(host, port)`` pairs exempt from the public-address and
    port rules (empty by default); ``ports`` are the ports allowed otherwise;
    ``resolver`` maps a host to its addresses (the system resolver by default).
    """

    allow_hosts: frozenset[tuple[str, int]] = frozenset()
    ports: frozenset[int] = DEFAULT_PORTS
    resolver: Resolver = field(default=system_resolver, compare=False)

    @classmethod
    def build(cls, allow_hosts: Iterable[str] = (), ports: Iterable[int] | None = None, resolver: Resolver | None = None) -> "NetPolicy":
        """A policy from ``"host:port"`` strings (validated, with a clear error)."""
        return cls(
            allow_hosts=frozenset(_parse_hostport(e) for e in allow_hosts),
            ports=frozenset(ports) if ports is not None else DEFAULT_PORTS,
            resolver=resolver or system_resolver,
        )

    def allowed_pair(self, host: str, port: int) -> bool:
        return (_norm_host(host), port) in self.allow_hosts

    def check_url(self, url: str) -> tuple[str, str, int]:
        """Syntax rules: scheme, credentials, host, port. Returns (scheme, host, port)."""
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as exc:
            raise BlockedURL(f"malformed URL ({exc})") from None
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https"):
            raise BlockedURL(f"scheme {scheme or '(none)'!r} is not allowed (only http and https)")
        if parts.username is not None or parts.password is not None:
            raise BlockedURL("URLs with credentials are not allowed")
        host = parts.hostname
        if not host:
            raise BlockedURL("URL has no host")
        port = port or (443 if scheme == "https" else 80)
        if port not in self.ports and not self.allowed_pair(host, port):
            raise BlockedURL(f"port {port} is not allowed (allowed: {', '.join(map(str, sorted(self.ports)))})")
        return scheme, _norm_host(host), port

    def check_address(self, host: str, address: str, port: int) -> None:
        """Raise ``BlockedURL`` unless connecting to ``address:port`` for ``host`` is allowed."""
        if self.allowed_pair(host, port) or self.allowed_pair(address, port):
            return
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            raise BlockedURL(f"{host} resolved to an unparsable address {address!r}") from None
        problem = address_problem(ip)
        if problem:
            raise BlockedURL(f"{host} -> {problem}")

    async def check_destination(self, url: str) -> None:
        """All rules for one hop before connecting: URL syntax and every resolved address."""
        _, host, port = self.check_url(url)
        if self.allowed_pair(host, port):
            return
        try:
            addresses = [str(ipaddress.ip_address(host))]
        except ValueError:
            addresses = await self.resolver(host, port)
        if not addresses:
            raise BlockedURL(f"host {host!r} resolved to no address")
        for address in addresses:
            self.check_address(host, address, port)

    def check_peer(self, url: str, server_addr: object) -> None:
        """Check the address a connection really reached (``network_stream`` ``server_addr``)."""
        _, host, port = self.check_url(url)
        if not isinstance(server_addr, tuple) or len(server_addr) < 2:
            raise BlockedURL("cannot tell which address the connection reached")
        self.check_address(host, str(server_addr[0]), int(server_addr[1]))
