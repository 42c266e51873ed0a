"""Idempotency-Key claims held in memory, as Redis would hold them."""

from __future__ import annotations

from comfyserve.gateway.limits.gcra import LimitsUnavailable


class FakeIdempotencyClaims:
    def __init__(self) -> None:
        self.claimed: set[tuple[str, str]] = set()
        self.released: list[tuple[str, str]] = []
        self.available = True

    async def claim(self, tenant_id: str, key: str) -> bool:
        if not self.available:
            raise LimitsUnavailable("down")
        if (tenant_id, key) in self.claimed:
            return False
        self.claimed.add((tenant_id, key))
        return True

    async def release(self, tenant_id: str, key: str) -> None:
        if not self.available:
            raise LimitsUnavailable("down")
        self.claimed.discard((tenant_id, key))
        self.released.append((tenant_id, key))
