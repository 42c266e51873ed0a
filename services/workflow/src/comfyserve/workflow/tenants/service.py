"""Tenant quotas and usage: reading and setting a tenant's limits, refusing a
submit over its queued limit, and each tenant's jobs and run time.

The running limit is kept by dispatch (`jobs.dispatch_repository`): a tenant at
its limit keeps its jobs queued while other tenants' jobs are granted.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncEngine

from comfyserve.runtime.database import autocommit
from comfyserve.workflow.errors import InvalidArgumentError, QueueFullError
from comfyserve.workflow.jobs.reads import require_tenant
from comfyserve.workflow.settings import Settings
from comfyserve.workflow.tenants import repository
from comfyserve.workflow.tenants.models import QuotaLimits, TenantQuota, TenantUsage

# A tenant's own limit cannot exceed what one row of counters can mean.
MAX_LIMIT = 1_000_000


@dataclass(frozen=True, slots=True)
class QuotaDefaults:
    max_running: int
    max_queued: int
    # How long a client refused for a full queue is told to wait.
    retry_after_seconds: float


def quota_defaults(settings: Settings) -> QuotaDefaults:
    return QuotaDefaults(
        max_running=settings.tenant_max_running,
        max_queued=settings.tenant_max_queued,
        retry_after_seconds=settings.queue_full_retry_after_seconds,
    )


def in_force(tenant_id: str, own: QuotaLimits, defaults: QuotaDefaults) -> TenantQuota:
    return TenantQuota(
        tenant_id=tenant_id,
        max_running=own.max_running or defaults.max_running,
        max_queued=own.max_queued or defaults.max_queued,
        running_is_default=own.max_running is None,
        queued_is_default=own.max_queued is None,
    )


def queue_full(limit: int, defaults: QuotaDefaults) -> QueueFullError:
    return QueueFullError(limit, defaults.retry_after_seconds)


class TenantService:
    def __init__(
        self,
        engine: AsyncEngine,
        defaults: QuotaDefaults,
        clock: Callable[[], datetime],
    ) -> None:
        self._engine = engine
        self._defaults = defaults
        self._clock = clock

    async def quota(self, tenant_id: str) -> TenantQuota:
        require_tenant(tenant_id)
        async with autocommit(self._engine) as conn:
            own = await repository.limits(conn, tenant_id)
        return in_force(tenant_id, own, self._defaults)

    async def set_quota(self, tenant_id: str, limits: QuotaLimits) -> TenantQuota:
        require_tenant(tenant_id)
        _check_limit("max_running", limits.max_running)
        _check_limit("max_queued", limits.max_queued)
        async with self._engine.begin() as conn:
            await repository.set_limits(conn, tenant_id, limits, self._clock())
        return in_force(tenant_id, limits, self._defaults)

    async def usage(self, tenant_ids: Sequence[str]) -> list[TenantUsage]:
        async with autocommit(self._engine) as conn:
            found = await repository.usage(conn, tenant_ids)
        # Every tenant asked about is answered, with or without jobs.
        for tenant_id in tenant_ids:
            found.setdefault(tenant_id, TenantUsage(tenant_id))
        return sorted(found.values(), key=lambda entry: entry.tenant_id)


def _check_limit(field: str, value: int | None) -> None:
    if value is not None and not 1 <= value <= MAX_LIMIT:
        raise InvalidArgumentError(field, f"must be between 1 and {MAX_LIMIT}")
