"""Refusing webhook targets that are not on the public internet, at submit.

A webhook URL is fetched by our own servers, so one that reaches a loopback,
private, link-local (cloud metadata), CGNAT or multicast address would let a
caller probe our internal network. `comfyserve.runtime.netguard` decides; the
notifier checks again when it connects, and this check makes a bad URL a 422
now rather than a dead delivery a day later. Every submit path (gRPC, the
Kafka ingress) goes through `Submission.submit`, which calls it.
"""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

from comfyserve.runtime.netguard import UnsafeTargetError, check_target
from comfyserve.workflow.errors import InvalidArgumentError

__all__ = ["check_webhook_url"]

_RESOLVE_TIMEOUT_S = 3.0
_FIELD = "webhook_url"


async def check_webhook_url(url: str, *, allow_loopback: bool) -> None:
    """Raise `InvalidArgumentError` naming `webhook_url` for a URL our servers
    must not call.

    `allow_loopback` (a development setting) lets loopback targets through, so
    a receiver on the developer's machine works; nothing else private is.
    """
    parts = urlsplit(url)
    if parts.username is not None or parts.password is not None:
        # Credentials in a URL end up in logs and in the job as shown.
        raise InvalidArgumentError(_FIELD, "must not carry credentials")
    try:
        async with asyncio.timeout(_RESOLVE_TIMEOUT_S):
            await check_target(url, allow_loopback=allow_loopback)
    except UnsafeTargetError as refused:
        raise InvalidArgumentError(_FIELD, str(refused)) from None
    except TimeoutError:
        raise InvalidArgumentError(
            _FIELD, f"the host {parts.hostname!r} did not resolve in time"
        ) from None
