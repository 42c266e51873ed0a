"""The client address a gateway passes along with a login or refresh."""

from __future__ import annotations

import ipaddress

from comfyserve.auth.errors import InvalidArgumentError


def client_address(value: str, field: str = "client_address") -> str | None:
    """`value` as a canonical IP address; None when the caller sent none."""
    if not value:
        return None
    try:
        return str(ipaddress.ip_address(value.strip()))
    except ValueError:
        raise InvalidArgumentError(field, "not an IP address") from None
