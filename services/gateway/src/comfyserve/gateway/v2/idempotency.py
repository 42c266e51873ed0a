"""Single-use `Idempotency-Key` claims for v2 submits (API.md §A.8).

A key is claimed atomically (SET NX) before the submit, so concurrent
duplicates and other gateway replicas agree on who got it; it is released when
the submit definitely created no job and kept when the outcome is unknown, so
a blind retry can never run a workflow twice.
"""

from __future__ import annotations

import hashlib
from typing import Protocol

from redis.asyncio import Redis
from redis.exceptions import RedisError

from comfyserve.gateway.limits.gcra import LimitsUnavailable

_KEY_PREFIX = "gateway:v2:idempotency"
CLAIM_TTL_SECONDS = 24 * 3600


class IdempotencyClaims(Protocol):
    async def claim(self, tenant_id: str, key: str) -> bool:
        """True when this call took the key; raises `LimitsUnavailable`."""
        ...

    async def release(self, tenant_id: str, key: str) -> None:
        """Frees a key whose submit created no job; raises `LimitsUnavailable`."""
        ...


def _redis_key(tenant_id: str, key: str) -> str:
    # Hashed, so a client's key text never lands in Redis or its logs verbatim.
    digest = hashlib.sha256(key.encode()).hexdigest()
    return f"{_KEY_PREFIX}:{tenant_id}:{digest}"


class RedisIdempotencyClaims:
    def __init__(self, redis: Redis, ttl_seconds: int = CLAIM_TTL_SECONDS) -> None:
        self._redis = redis
        self._ttl = ttl_seconds

    async def claim(self, tenant_id: str, key: str) -> bool:
        try:
            taken = await self._redis.set(
                _redis_key(tenant_id, key), "1", nx=True, ex=self._ttl
            )
        except (RedisError, OSError, TimeoutError) as error:
            raise LimitsUnavailable(type(error).__name__) from error
        return bool(taken)

    async def release(self, tenant_id: str, key: str) -> None:
        try:
            await self._redis.delete(_redis_key(tenant_id, key))
        except (RedisError, OSError, TimeoutError) as error:
            raise LimitsUnavailable(type(error).__name__) from error
