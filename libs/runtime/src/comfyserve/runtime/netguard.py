"""Outbound HTTP to a URL a caller gave us, without letting it reach inside.

A webhook URL is chosen by a tenant, so sending to it could probe or attack
our own network (server-side request forgery). `check_target` resolves the
host once and refuses it if any of its addresses is not a public unicast
one; `pinned_transport` then connects to that checked address only, so a
second DNS answer (rebinding) or a redirect to another host never gets a
socket. TLS is still verified against the URL's host name.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
from collections.abc import Iterable
from dataclasses import dataclass

import httpcore
import httpx

__all__ = ["Target", "UnsafeTargetError", "check_target", "pinned_transport"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_SCHEMES = {"http": 80, "https": 443}
_METADATA = {
    ipaddress.ip_address("169.254.169.254"),
    ipaddress.ip_address("fd00:ec2::254"),
}
_LIMITS = httpx.Limits(max_connections=100, max_keepalive_connections=20)
_CGNAT = ipaddress.ip_network("100.64.0.0/10")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
# IPv4-compatible IPv6 (::a.b.c.d), deprecated but still routed by some stacks.
_V4_COMPATIBLE = ipaddress.ip_network("::/96")


class UnsafeTargetError(ValueError):
    """The URL may not be sent to; `reason` says why in a few words."""

    def __init__(self, url: str, host: str, reason: str) -> None:
        super().__init__(f"{host or url!r} is refused: {reason}")
        self.url = url
        self.host = host
        self.reason = reason


@dataclass(frozen=True)
class Target:
    """A URL whose host resolved to `address`, a checked public address."""

    url: str
    host: str
    port: int
    address: str


def _embedded_v4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 form carries and routes to, if any."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    if ip in _NAT64 or (ip in _V4_COMPATIBLE and int(ip) > 1):
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def _refusal(ip: IPAddress) -> str | None:
    """Why `ip` may not be connected to, or None for a public unicast address."""
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = _embedded_v4(ip)
        if embedded is not None:
            # The packet goes to the IPv4 address, so that is what is judged.
            inner = _refusal(embedded)
            return None if inner is None else f"{inner} {embedded} embedded in {ip}"
    if ip in _METADATA:
        return "cloud metadata address"
    if ip.is_loopback:
        return "loopback address"
    if ip.is_unspecified:
        return "unspecified address"
    if ip.is_link_local:
        return "link-local address"
    if isinstance(ip, ipaddress.IPv4Address) and ip in _CGNAT:
        return "shared (CGNAT) address"
    if ip.is_multicast:
        return "multicast address"
    if ip.is_reserved:
        return "reserved address"
    if ip.is_private:
        return "private address"
    if not ip.is_global:
        return "reserved address"
    return None


async def _resolve(url: str, host: str, port: int) -> list[IPAddress]:
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise UnsafeTargetError(url, host, "host does not resolve") from exc
    # Scope ids (fe80::1%eth0) are dropped; the address alone is judged.
    addresses = [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]
    if not addresses:
        raise UnsafeTargetError(url, host, "host does not resolve")
    return addresses


async def check_target(url: str, *, allow_loopback: bool = False) -> Target:
    """Resolve `url`'s host and return it pinned to a checked address.

    Refuses anything but http(s), and a host if ANY of its addresses is not
    public: a name with one private answer among public ones could be steered
    to it. `allow_loopback` admits loopback addresses (local development)
    and nothing else that is not public.
    """
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise UnsafeTargetError(url, "", f"not a valid URL ({exc})") from exc
    if parsed.scheme not in _SCHEMES:
        raise UnsafeTargetError(url, parsed.host, "only http and https are allowed")
    # The host as httpcore will ask the network backend for it (IDNA-encoded).
    host = parsed.raw_host.decode("ascii")
    if not host:
        raise UnsafeTargetError(url, "", "the URL has no host")
    port = parsed.port or _SCHEMES[parsed.scheme]
    if not 0 < port < 65536:
        raise UnsafeTargetError(url, host, f"port {port} is out of range")
    addresses = await _resolve(url, host, port)
    for ip in addresses:
        reason = _refusal(ip)
        if reason is not None and not (allow_loopback and ip.is_loopback):
            shown = "" if str(ip) in reason else f" {ip}"
            raise UnsafeTargetError(url, host, f"resolves to a {reason}{shown}")
    return Target(url=url, host=host, port=port, address=str(addresses[0]))


class _PinnedBackend(httpcore.AsyncNetworkBackend):
    """Opens connections to the target's checked address and nowhere else."""

    def __init__(self, target: Target) -> None:
        self._target = target
        self._backend = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore passes it)
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        if (host, port) != (self._target.host, self._target.port):
            # A redirect or a reused client asking for another origin.
            raise httpcore.ConnectError(
                f"{host}:{port} is not the checked target "
                f"{self._target.host}:{self._target.port}"
            )
        return await self._backend.connect_tcp(
            self._target.address,
            port,
            timeout=timeout,
            local_address=local_address,
            socket_options=socket_options,
        )

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore passes it)
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("unix sockets are not a checked target")

    async def sleep(self, seconds: float) -> None:
        await self._backend.sleep(seconds)


class _PinnedTransport(httpx.AsyncHTTPTransport):
    def __init__(
        self,
        target: Target,
        *,
        verify: ssl.SSLContext | str | bool,
        limits: httpx.Limits,
        http2: bool,
        retries: int,
    ) -> None:
        super().__init__(verify=verify, limits=limits, http2=http2, retries=retries)
        # httpx 0.28 takes no network backend, so the pool it built is
        # replaced by the same pool over the pinned backend. httpcore sends
        # the URL's host as SNI and verifies the certificate against it.
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(verify=verify),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            http1=True,
            http2=http2,
            retries=retries,
            network_backend=_PinnedBackend(target),
        )


def pinned_transport(
    target: Target,
    *,
    verify: ssl.SSLContext | str | bool = True,
    limits: httpx.Limits = _LIMITS,
    http2: bool = False,
    retries: int = 0,
) -> httpx.AsyncHTTPTransport:
    """A transport for an `httpx.AsyncClient` that only reaches `target`.

    A redirect is never followed to another origin, even by a client told to
    follow redirects: the connection to it is refused. Keep the client's
    `follow_redirects` off (httpx's default) so a 3xx is the receiver's answer.
    """
    return _PinnedTransport(
        target, verify=verify, limits=limits, http2=http2, retries=retries
    )
