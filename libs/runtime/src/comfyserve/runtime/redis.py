"""A Redis client that fails fast: for services whose calls wait on Redis."""

from __future__ import annotations

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff


def redis_client(url: str, timeout_seconds: float) -> Redis:
    """A call gives up within two timeouts: one immediate retry (for a pooled
    connection Redis closed), not redis-py's ten with backoff, which hold the
    caller for seconds while Redis is down. Use it as `async with`."""
    return Redis.from_url(
        url,
        socket_timeout=timeout_seconds,
        socket_connect_timeout=timeout_seconds,
        retry=Retry(NoBackoff(), retries=1),
    )
