"""Suspended tenants, as every gateway sees them at once.

The auth service owns suspension, but an access token does not know of it and
API-key principals are cached for seconds: the admin route records it here,
after the auth service has, and every write checks it.
"""

from __future__ import annotations

from typing import Protocol

from redis.asyncio import Redis
from redis.exceptions import RedisError

from comfyserve.gateway.limits.gcra import LimitsUnavailable

_KEY_PREFIX = "gateway:suspended"


class Suspensions(Protocol):
    async def is_suspended(self, tenant_id: str) -> bool:
        """Raises `LimitsUnavailable` when it cannot tell."""
        ...

    async def set(self, tenant_id: str, suspended: bool) -> None:
        """Raises `LimitsUnavailable` when it cannot."""
        ...


class RedisSuspensions:
    def __init__(self, redis: Redis) -> None:
        self._redis = redis

    async def is_suspended(self, tenant_id: str) -> bool:
        try:
            return bool(await self._redis.exists(f"{_KEY_PREFIX}:{tenant_id}"))
        except (RedisError, OSError, TimeoutError) as error:
            raise LimitsUnavailable(type(error).__name__) from error

    async def set(self, tenant_id: str, suspended: bool) -> None:
        key = f"{_KEY_PREFIX}:{tenant_id}"
        try:
            if suspended:
                await self._redis.set(key, "1")
            else:
                await self._redis.delete(key)
        except (RedisError, OSError, TimeoutError) as error:
            raise LimitsUnavailable(type(error).__name__) from error
