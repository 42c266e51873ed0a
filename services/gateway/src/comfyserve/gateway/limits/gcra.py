"""GCRA in Redis: one Lua script decides and records a request atomically, so
every gateway shares one count per principal and route class.

throttled-py, the maintained GCRA library, was not used: it pins redis < 8
(the lock has 8.1), builds its own Redis client, and writes the old
`RateLimit-Limit`/`-Remaining`/`-Reset` headers rather than the current
draft's `RateLimit-Policy` and `RateLimit`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

from redis.asyncio import Redis
from redis.exceptions import RedisError

from comfyserve.gateway.limits.policy import Quota

# KEYS[1] holds the bucket's theoretical arrival time (TAT) in ms. ARGV: the
# emission interval T in ms, the burst. A request is allowed when the TAT it
# would leave is at most burst * T ahead of now. Redis' own clock is used, so
# gateways never disagree on time. Answers {allowed, remaining, wait_ms}:
# wait_ms is how long until one more request is allowed.
_SCRIPT = """
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local clock = redis.call("TIME")
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local tat = tonumber(redis.call("GET", KEYS[1]) or now)
if tat < now then tat = now end
local new_tat = tat + interval
local allow_at = new_tat - burst * interval
if now < allow_at then
  return {0, 0, allow_at - now}
end
redis.call("SET", KEYS[1], new_tat, "PX", new_tat - now)
local base = new_tat - burst * interval
local remaining = math.floor((now - base) / interval)
return {1, remaining, base + (remaining + 1) * interval - now}
"""

_KEY_PREFIX = "gateway:rate"


def bucket_key(name: str, identity: str) -> str:
    """Where Redis keeps the TAT of `identity` under policy `name`."""
    return f"{_KEY_PREFIX}:{name}:{identity}"


class LimitsUnavailable(Exception):
    """Redis, which holds rate limits and suspensions, could not be asked; the
    caller decides whether to serve."""


@dataclass(frozen=True, slots=True)
class Decision:
    """One request's outcome under one policy (`name`: the route class)."""

    name: str
    quota: Quota
    allowed: bool
    remaining: int
    wait_s: float

    @property
    def retry_after_s(self) -> int:
        return max(1, math.ceil(self.wait_s))

    def headers(self) -> dict[str, str]:
        """draft-ietf-httpapi-ratelimit-headers (-10): the policy, and what is
        left of it; `t` is when one more request is allowed, 0 when full."""
        reset = 0 if self.remaining >= self.quota.burst else self.retry_after_s
        return {
            "RateLimit-Policy": (
                f'"{self.name}";q={self.quota.burst};w={self.quota.window_s}'
            ),
            "RateLimit": f'"{self.name}";r={self.remaining};t={reset}',
        }


class RateLimiter(Protocol):
    async def acquire(self, name: str, identity: str, quota: Quota) -> Decision:
        """Counts one request of `identity` under policy `name`; raises
        `LimitsUnavailable` when it cannot."""
        ...


class RedisRateLimiter:
    def __init__(self, redis: Redis) -> None:
        self._script = redis.register_script(_SCRIPT)

    async def acquire(self, name: str, identity: str, quota: Quota) -> Decision:
        try:
            allowed, remaining, wait_ms = await self._script(
                keys=[bucket_key(name, identity)],
                args=[quota.interval_ms, quota.burst],
            )
        except (RedisError, OSError, TimeoutError) as error:
            raise LimitsUnavailable(type(error).__name__) from error
        return Decision(
            name=name,
            quota=quota,
            allowed=bool(allowed),
            remaining=int(remaining),
            wait_s=int(wait_ms) / 1000,
        )
