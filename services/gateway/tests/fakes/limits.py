"""Redis' side of the gateway, rate limits and suspensions, in memory."""

from __future__ import annotations

from comfyserve.gateway.limits.gcra import Decision, LimitsUnavailable
from comfyserve.gateway.limits.policy import Quota


class FakeLimiter:
    """GCRA's count without its clock: `burst` requests per identity and
    class pass, then every one is refused (all of them while `exhausted`);
    `down` is Redis unreachable."""

    def __init__(self) -> None:
        self.used: dict[tuple[str, str], int] = {}
        self.acquired: list[tuple[str, str, Quota]] = []
        self.down = False
        self.exhausted = False

    async def acquire(self, name: str, identity: str, quota: Quota) -> Decision:
        self.acquired.append((name, identity, quota))
        if self.down:
            raise LimitsUnavailable("ConnectionError")
        used = self.used.get((name, identity), 0) + 1
        self.used[(name, identity)] = used
        return Decision(
            name=name,
            quota=quota,
            allowed=used <= quota.burst and not self.exhausted,
            remaining=max(0, quota.burst - used),
            wait_s=quota.interval_ms / 1000,
        )


class FakeSuspensions:
    def __init__(self) -> None:
        self.suspended: set[str] = set()
        self.down = False

    async def is_suspended(self, tenant_id: str) -> bool:
        if self.down:
            raise LimitsUnavailable("ConnectionError")
        return tenant_id in self.suspended

    async def set(self, tenant_id: str, suspended: bool) -> None:
        if self.down:
            raise LimitsUnavailable("ConnectionError")
        if suspended:
            self.suspended.add(tenant_id)
        else:
            self.suspended.discard(tenant_id)
