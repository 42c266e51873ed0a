"""Route classes, and the quota each gives a principal."""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

from comfyserve.gateway.settings import Settings
from comfyserve.runtime.auth import Principal


class RouteClass(StrEnum):
    """What a route does, as rate limits count it; each has its own bucket."""

    SUBMIT = "submit"
    READ = "read"
    UPLOAD = "upload"
    # Writes that are neither jobs nor files: API keys, logout, admin changes.
    MANAGE = "manage"
    # Register, log in, refresh: counted per client address.
    AUTH = "auth"

    @property
    def writes(self) -> bool:
        """Writes are refused while limits cannot be checked; reads are not."""
        return self is not RouteClass.READ


@dataclass(frozen=True, slots=True)
class Quota:
    per_minute: int
    burst: int

    @property
    def interval_ms(self) -> int:
        """The time one request's allowance takes to come back (GCRA's T)."""
        return max(1, round(60_000 / self.per_minute))

    @property
    def window_s(self) -> int:
        """The time a spent burst takes to refill, the policy's `w`."""
        return max(1, math.ceil(self.burst * self.interval_ms / 1000))


def default_quota(settings: Settings, route_class: RouteClass) -> Quota:
    name = route_class.value
    per_minute: int = getattr(settings, f"rate_{name}_per_minute")
    burst: int = getattr(settings, f"rate_{name}_burst")
    return Quota(per_minute, burst)


def quota_for(
    settings: Settings, route_class: RouteClass, principal: Principal | None
) -> Quota:
    """The class's quota; an API key's own rate and burst, where it has them,
    replace the defaults of every class it is counted under."""
    quota = default_quota(settings, route_class)
    if principal is None:
        return quota
    return Quota(
        principal.rate_limit_per_minute or quota.per_minute,
        principal.rate_limit_burst or quota.burst,
    )
