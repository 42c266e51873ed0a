"""Sending one signed request to a receiver, through the SSRF guard."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

import httpx

from comfyserve.runtime.netguard import (
    UnsafeTargetError,
    check_target,
    pinned_transport,
)

EXCERPT_BYTES = 1024
# The one refusal of the guard that may pass with time: a name that does not
# resolve now (DNS outage, a record not yet published).
_UNRESOLVED = "host does not resolve"
USER_AGENT = "comfyserve-webhooks/1"


@dataclass(frozen=True, slots=True)
class Sent:
    """What one request got: a status, or an `error` (network, timeout, a
    refused target); `refused` when the target may never be sent to."""

    status_code: int | None
    excerpt: str
    error: str
    latency_ms: int
    refused: bool = False


class WebhookSender(Protocol):
    async def send(self, url: str, headers: Mapping[str, str], body: bytes) -> Sent: ...


class HttpSender:
    """Checks the target, then connects to the checked address only, following
    no redirect (a 3xx is the receiver's answer)."""

    def __init__(self, *, timeout_s: float, allow_loopback: bool) -> None:
        self._timeout = httpx.Timeout(timeout_s)
        self._allow_loopback = allow_loopback
        # Loading the CA bundle costs milliseconds of CPU: once, not per request.
        self._tls = httpx.create_ssl_context()

    async def send(self, url: str, headers: Mapping[str, str], body: bytes) -> Sent:
        started = time.perf_counter()

        def elapsed() -> int:
            return int((time.perf_counter() - started) * 1000)

        try:
            target = await check_target(url, allow_loopback=self._allow_loopback)
        except UnsafeTargetError as error:
            return Sent(
                None, "", str(error), elapsed(), refused=error.reason != _UNRESOLVED
            )
        request_headers = {
            **headers,
            "content-type": "application/json",
            "user-agent": USER_AGENT,
        }
        try:
            async with httpx.AsyncClient(
                transport=pinned_transport(target, verify=self._tls),
                timeout=self._timeout,
                follow_redirects=False,
            ) as client:
                async with client.stream(
                    "POST", url, content=body, headers=request_headers
                ) as response:
                    excerpt = await _excerpt(response)
                    return Sent(response.status_code, excerpt, "", elapsed())
        except httpx.TimeoutException:
            return Sent(None, "", "timed out", elapsed())
        except httpx.HTTPError as error:
            return Sent(None, "", f"{type(error).__name__}: {error}"[:500], elapsed())


async def _excerpt(response: httpx.Response) -> str:
    """The start of the answer: enough to debug by, never a whole body."""
    read = b""
    async for chunk in response.aiter_raw():
        read += chunk
        if len(read) >= EXCERPT_BYTES:
            break
    return read[:EXCERPT_BYTES].decode("utf-8", errors="replace")
