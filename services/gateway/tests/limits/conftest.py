"""The production limiter and suspensions, over the `redis` each module gives."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from comfyserve.gateway.limits.gcra import RedisRateLimiter
from comfyserve.gateway.limits.suspensions import RedisSuspensions


@pytest.fixture
def limiter(redis: Redis) -> RedisRateLimiter:
    return RedisRateLimiter(redis)


@pytest.fixture
def suspensions(redis: Redis) -> RedisSuspensions:
    return RedisSuspensions(redis)
