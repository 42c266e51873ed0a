"""The prompt router against the stack's Redis, as two gateway replicas: one
holds the socket, the other takes the prompt."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest

from comfyserve.gateway.native.routing import (
    Notice,
    PromptQueued,
    QueueChanged,
    RedisPromptRouter,
    Replaced,
    subscriber_redis,
)

pytestmark = pytest.mark.integration


@pytest.fixture
async def replicas(stack) -> AsyncIterator[tuple[RedisPromptRouter, RedisPromptRouter]]:
    first = subscriber_redis(stack["REDIS_URL"], 2)
    second = subscriber_redis(stack["REDIS_URL"], 2)
    yield RedisPromptRouter(first), RedisPromptRouter(second)
    await first.aclose()
    await second.aclose()


@pytest.fixture
def tenant() -> str:
    return uuid.uuid4().hex[:16]


async def next_notice(notices: AsyncIterator[Notice]) -> Notice:
    return await asyncio.wait_for(anext(notices), 10)


async def test_a_prompt_on_one_replica_reaches_the_socket_on_the_other(
    replicas, tenant
) -> None:
    holder, taker = replicas
    async with holder.listen(tenant, "C", "socket-1") as notices:
        await taker.announce(tenant, "C", "p1")

        assert await next_notice(notices) == QueueChanged()
        assert await next_notice(notices) == PromptQueued("p1")


async def test_other_client_ids_and_tenants_hear_only_their_own(
    replicas, tenant
) -> None:
    holder, taker = replicas
    async with (
        holder.listen(tenant, "D", "socket-d") as same_tenant,
        holder.listen(f"{tenant}x", "C", "socket-x") as other_tenant,
    ):
        await taker.announce(tenant, "C", "p1")
        await taker.announce(f"{tenant}x", "C", "p2")
        # One subscription hears its channels in publish order: anything that
        # leaked would come before these.
        await taker.queue_changed(tenant)
        await taker.queue_changed(f"{tenant}x")

        assert [await next_notice(same_tenant) for _ in range(2)] == [
            QueueChanged(),
            QueueChanged(),
        ]
        assert [await next_notice(other_tenant) for _ in range(3)] == [
            QueueChanged(),
            PromptQueued("p2"),
            QueueChanged(),
        ]


async def test_a_newer_socket_replaces_the_older_on_any_replica(
    replicas, tenant
) -> None:
    holder, taker = replicas
    async with holder.listen(tenant, "C", "older") as older:
        async with taker.listen(tenant, "C", "newer") as newer:
            assert await next_notice(older) == Replaced()
            await taker.queue_changed(tenant, origin="newer")
            await taker.queue_changed(tenant)
            # Its own queue news is not echoed back to the socket that sent it.
            assert await next_notice(newer) == QueueChanged()
            assert await next_notice(older) == QueueChanged()
            assert await next_notice(older) == QueueChanged()
