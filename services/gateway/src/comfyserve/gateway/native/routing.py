"""Which native WebSocket hears of which prompt, across gateway replicas.

`POST /prompt` calls, after a successful submit::

    await resources.prompt_router.announce(tenant_id, client_id, prompt_id)

(`client_id` is `""` when the request named none). The announcement goes out
over Redis pub/sub, so whichever replica holds the socket registered under
that tenant's `client_id` learns of the prompt and follows the job itself;
every socket of the tenant hears that its queue changed. Nothing is stored:
a socket that connects later never hears of earlier prompts, exactly as on
ComfyUI, whose clients recover through `/history`.

Channels: `comfyserve:ws:<tenant>` (queue changes) and
`comfyserve:ws:<tenant>:<client_id>` (prompts for that client, and claims of
the id by a newer socket, which replaces the older one). Tenant ids hold no
`:`, so no client id can reach another tenant's channel.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Protocol

from redis.asyncio import Redis
from redis.asyncio.client import PubSub

_PREFIX = "comfyserve:ws"


@dataclass(frozen=True, slots=True)
class PromptQueued:
    """A prompt of this socket's client id was accepted."""

    prompt_id: str


@dataclass(frozen=True, slots=True)
class QueueChanged:
    """The tenant's queue grew, or a prompt started or ended."""


@dataclass(frozen=True, slots=True)
class Replaced:
    """A newer socket claimed this client id; this one must stop."""


Notice = PromptQueued | QueueChanged | Replaced


class PromptRouter(Protocol):
    async def announce(self, tenant_id: str, client_id: str, prompt_id: str) -> None:
        """Tells the tenant's sockets of a newly queued prompt."""
        ...

    async def queue_changed(self, tenant_id: str, origin: str = "") -> None:
        """Tells the tenant's sockets, but socket `origin`, which has told its
        own client already, that a prompt started or ended."""
        ...

    def listen(
        self, tenant_id: str, client_id: str, socket_id: str
    ) -> AbstractAsyncContextManager[AsyncIterator[Notice]]:
        """The notices for one socket from the moment it is entered; entering
        claims `client_id`, replacing any older socket of that id."""
        ...


def tenant_channel(tenant_id: str) -> str:
    return f"{_PREFIX}:{tenant_id}"


def client_channel(tenant_id: str, client_id: str) -> str:
    return f"{_PREFIX}:{tenant_id}:{client_id}"


def decode(tenant_id: str, channel: str, payload: str, socket_id: str) -> Notice | None:
    """A pub/sub message as the notice it carries for socket `socket_id`;
    None for this socket's own claim and its own queue news."""
    body = json.loads(payload)
    if channel == tenant_channel(tenant_id):
        return None if body.get("origin") == socket_id else QueueChanged()
    if "prompt_id" in body:
        return PromptQueued(str(body["prompt_id"]))
    return None if body.get("socket") == socket_id else Replaced()


class RedisPromptRouter:
    """The router over Redis pub/sub; `redis` must have no read timeout, since
    a subscription is idle for as long as no prompt comes."""

    def __init__(self, redis: Redis) -> None:
        self._redis = redis

    async def announce(self, tenant_id: str, client_id: str, prompt_id: str) -> None:
        # The queue first: one connection receives both channels in publish
        # order, so the client's `status` frame precedes the prompt's own.
        await self.queue_changed(tenant_id)
        if client_id:
            await self._redis.publish(
                client_channel(tenant_id, client_id),
                json.dumps({"prompt_id": prompt_id}),
            )

    async def queue_changed(self, tenant_id: str, origin: str = "") -> None:
        await self._redis.publish(
            tenant_channel(tenant_id), json.dumps({"origin": origin})
        )

    @asynccontextmanager
    async def listen(
        self, tenant_id: str, client_id: str, socket_id: str
    ) -> AsyncIterator[AsyncIterator[Notice]]:
        own = client_channel(tenant_id, client_id)
        async with self._redis.pubsub(ignore_subscribe_messages=True) as pubsub:
            await pubsub.subscribe(tenant_channel(tenant_id), own)
            await self._redis.publish(own, json.dumps({"socket": socket_id}))
            yield _notices(pubsub, tenant_id, socket_id)


async def _notices(
    pubsub: PubSub, tenant_id: str, socket_id: str
) -> AsyncIterator[Notice]:
    async for message in pubsub.listen():
        if message["type"] != "message":
            continue
        notice = decode(
            tenant_id, _text(message["channel"]), _text(message["data"]), socket_id
        )
        if notice is not None:
            yield notice


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def subscriber_redis(url: str, connect_timeout_seconds: float) -> Redis:
    """Redis for the router: connecting fails fast, but reads never time out
    (a subscription waits as long as no prompt comes); health checks notice
    a connection that died meanwhile."""
    return Redis.from_url(
        url,
        socket_connect_timeout=connect_timeout_seconds,
        health_check_interval=30,
    )
