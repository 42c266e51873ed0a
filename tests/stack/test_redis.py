"""Redis answers through redis-py's asyncio client."""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio import Redis

pytestmark = pytest.mark.integration


async def test_counter_expiry_and_pubsub(stack: dict[str, str], unique: str) -> None:
    client = Redis.from_url(stack["REDIS_URL"], decode_responses=True)
    try:
        key = f"test:{unique}"
        assert await client.incr(key) == 1
        assert await client.incr(key) == 2
        await client.expire(key, 60)
        assert 0 < await client.ttl(key) <= 60

        pubsub = client.pubsub()
        await pubsub.subscribe(f"chan:{unique}")
        await client.publish(f"chan:{unique}", "hello")
        async with asyncio.timeout(10):
            while True:
                message = await pubsub.get_message(
                    ignore_subscribe_messages=True, timeout=1
                )
                if message is not None:
                    break
        assert message["data"] == "hello"
        await pubsub.aclose()  # type: ignore[no-untyped-call]
        await client.delete(key)
    finally:
        await client.aclose()
