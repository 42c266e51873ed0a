"""Whether a request may go on: its rate limit, and its tenant's suspension."""

from __future__ import annotations

import structlog

from comfyserve.gateway.errors import (
    LimitsUnavailableError,
    RateLimitedError,
    TenantSuspendedError,
)
from comfyserve.gateway.limits.gcra import Decision, LimitsUnavailable, RateLimiter
from comfyserve.gateway.limits.policy import Quota, RouteClass
from comfyserve.gateway.limits.suspensions import Suspensions
from comfyserve.runtime.auth import Principal

log = structlog.get_logger(__name__)


async def admit(
    limiter: RateLimiter, route_class: RouteClass, identity: str, quota: Quota
) -> Decision | None:
    """Counts the request; raises `RateLimitedError` past the quota. Without
    Redis a write is refused and a read served (None: nothing was counted)."""
    try:
        decision = await limiter.acquire(route_class.value, identity, quota)
    except LimitsUnavailable as error:
        log.warning(
            "gateway.rate_limit.unavailable",
            route_class=route_class.value,
            refused=route_class.writes,
            error=str(error),
        )
        if route_class.writes:
            raise LimitsUnavailableError() from None
        return None
    if not decision.allowed:
        raise RateLimitedError(
            f"Too many {route_class.value} requests; retry in "
            f"{decision.retry_after_s} s",
            decision.wait_s,
            decision.headers(),
        )
    return decision


async def refuse_suspended(suspensions: Suspensions, principal: Principal) -> None:
    """Refuses a write of a suspended tenant, whichever gateway it asks: as the
    auth service said when it vouched for an API key, or as an administrator
    recorded since (an access token does not know)."""
    if principal.tenant_suspended:
        raise TenantSuspendedError()
    try:
        suspended = await suspensions.is_suspended(principal.tenant_id)
    except LimitsUnavailable:
        raise LimitsUnavailableError() from None
    if suspended:
        raise TenantSuspendedError()
