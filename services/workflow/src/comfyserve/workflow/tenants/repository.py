"""Queries on tenant quotas and on a tenant's jobs as a whole. Never commits.

Counting a tenant's pending or running jobs reads `jobs_tenant_active_idx`;
the status literals match its predicate.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Text, func, literal, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from comfyserve.workflow.jobs.models import IS_PENDING, IS_RUNNING, jobs
from comfyserve.workflow.tenants.models import QuotaLimits, TenantUsage, tenant_quotas

# Every grant to a tenant takes this advisory lock first (one key per tenant).
_RUNNING_LOCK_PREFIX = "workflow.running:"


async def limits(conn: AsyncConnection, tenant_id: str) -> QuotaLimits:
    query = select(tenant_quotas.c.max_running, tenant_quotas.c.max_queued).where(
        tenant_quotas.c.tenant_id == tenant_id
    )
    row = (await conn.execute(query)).first()
    if row is None:
        return QuotaLimits()
    return QuotaLimits(max_running=row.max_running, max_queued=row.max_queued)


async def set_limits(
    conn: AsyncConnection, tenant_id: str, values: QuotaLimits, now: datetime
) -> None:
    statement = pg_insert(tenant_quotas).values(
        tenant_id=tenant_id,
        max_running=values.max_running,
        max_queued=values.max_queued,
        updated_at=now,
    )
    await conn.execute(
        statement.on_conflict_do_update(
            index_elements=[tenant_quotas.c.tenant_id],
            set_={
                "max_running": statement.excluded.max_running,
                "max_queued": statement.excluded.max_queued,
                "updated_at": statement.excluded.updated_at,
            },
        )
    )


def queued_limit(
    tenant_id: ColumnElement[str], default: ColumnElement[int]
) -> ColumnElement[int]:
    """The tenant's queue limit in force, its own or `default`, as SQL to
    read in the statement that queues a job.

    Read there without a lock: submits in flight at the same moment may each
    pass, so the queue can go over by at most that many; a lock per tenant
    would make a tenant's submits wait on each other."""
    own = (
        select(tenant_quotas.c.max_queued)
        .where(tenant_quotas.c.tenant_id == tenant_id)
        .scalar_subquery()
    )
    return func.coalesce(own, default)


def below_limit(
    tenant_id: ColumnElement[str], limit: ColumnElement[int]
) -> ColumnElement[bool]:
    """Whether the tenant has fewer than `limit` pending jobs, counted no
    further than `limit`: a tenant at its queue's limit is refused after
    reading that many index entries, not all of its queue."""
    some = (
        select(jobs.c.id)
        .where(jobs.c.tenant_id == tenant_id, IS_PENDING)
        .limit(limit)
        .subquery()
    )
    return select(func.count()).select_from(some).scalar_subquery() < limit


async def count_running(conn: AsyncConnection, tenant_id: str) -> int:
    return await _count(conn, tenant_id, IS_RUNNING)


async def _count(
    conn: AsyncConnection, tenant_id: str, status: ColumnElement[bool]
) -> int:
    query = select(func.count()).where(jobs.c.tenant_id == tenant_id, status)
    return int((await conn.execute(query)).scalar_one())


async def lock_running(conn: AsyncConnection, tenant_id: str) -> None:
    """Serialise grants to one tenant until the transaction ends, so that a
    count of its running jobs taken after this stays true until the grant
    commits."""
    await conn.execute(select(running_lock(literal(tenant_id, Text))))


def running_lock(tenant_id: ColumnElement[str]) -> ColumnElement[Any]:
    """`lock_running` as SQL, for a statement that finds the tenant itself;
    a count in a later statement of the transaction is then exact."""
    key = literal(_RUNNING_LOCK_PREFIX, Text).concat(tenant_id)
    return func.pg_advisory_xact_lock(func.hashtextextended(key, 0))


async def usage(
    conn: AsyncConnection, tenant_ids: Sequence[str]
) -> dict[str, TenantUsage]:
    """Jobs by status and run time per tenant: of `tenant_ids`, or of every
    tenant with jobs when empty."""
    query = select(
        jobs.c.tenant_id,
        jobs.c.status,
        func.count(),
        func.coalesce(func.sum(jobs.c.duration_seconds), 0.0),
    ).group_by(jobs.c.tenant_id, jobs.c.status)
    if tenant_ids:
        query = query.where(jobs.c.tenant_id.in_(tenant_ids))
    found: dict[str, TenantUsage] = {}
    for tenant_id, status, count, seconds in await conn.execute(query):
        entry = found.setdefault(tenant_id, TenantUsage(tenant_id))
        entry.jobs_by_status[status] = int(count)
        entry.gpu_seconds += float(seconds)
    return found
