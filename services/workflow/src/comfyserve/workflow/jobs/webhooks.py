"""Refusing webhook targets that are not on the public internet, at submit.

A webhook URL is fetched by our own servers, so a URL naming a loopback,
private, link-local (cloud metadata), CGNAT or multicast address, directly or
through a name, or through an IPv6 form that embeds one (IPv4-mapped, 6to4,
NAT64), would let a caller reach our internal network. The notifier checks the
address again when it connects; this check makes a bad URL a 422 now rather
than a dead delivery later.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import urlsplit

from comfyserve.workflow.errors import InvalidArgumentError

__all__ = ["check_webhook_url", "is_public_address"]

_RESOLVE_TIMEOUT_S = 3.0
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_FIELD = "webhook_url"

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def is_public_address(address: IpAddress) -> bool:
    """Whether `address`, and any IPv4 address it embeds, is globally routable
    unicast."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(address)
        if embedded is not None and not is_public_address(embedded):
            return False
    return address.is_global and not address.is_multicast


async def _resolve(host: str, port: int) -> list[IpAddress]:
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(_RESOLVE_TIMEOUT_S):
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, TimeoutError):
        raise InvalidArgumentError(
            _FIELD, f"the host {host!r} does not resolve"
        ) from None
    return [ipaddress.ip_address(info[4][0]) for info in infos]


async def check_webhook_url(url: str, *, allow_private: bool) -> None:
    """Raise `InvalidArgumentError` for a URL our servers must not call.

    `allow_private` (a development setting) lets loopback and private targets
    through, so a receiver on the developer's machine works.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise InvalidArgumentError(_FIELD, "must be an http(s) URL")
    if not parts.hostname:
        raise InvalidArgumentError(_FIELD, "must name a host")
    if parts.username is not None or parts.password is not None:
        raise InvalidArgumentError(_FIELD, "must not carry credentials")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise InvalidArgumentError(_FIELD, "has an invalid port") from None
    if allow_private:
        return
    try:
        addresses: list[IpAddress] = [ipaddress.ip_address(parts.hostname)]
    except ValueError:
        addresses = await _resolve(parts.hostname, port)
    refused = sorted({str(a) for a in addresses if not is_public_address(a)})
    if refused:
        raise InvalidArgumentError(
            _FIELD,
            f"must reach a public address; {parts.hostname} is {', '.join(refused)}",
        )
