"""Dispatch by claim and the leases that fence each attempt: granting the first
pending job of a pool or one named job, renewing and reading leases, and the
lapsed ones the sweeper re-queues. Never commits."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import (
    ColumnElement,
    Integer,
    Select,
    SmallInteger,
    Text,
    bindparam,
    cast,
    func,
    literal_column,
    select,
    tuple_,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from comfyserve.workflow.db import JOBS_CHANNEL
from comfyserve.workflow.jobs import queue_repository
from comfyserve.workflow.jobs.models import (
    IS_PENDING,
    IS_RUNNING,
    JOB_COLUMNS,
    SUMMARY_COLUMNS,
    JobRecord,
    JobStatus,
    job_from_row,
    jobs,
)
from comfyserve.workflow.tenants import repository as tenants
from comfyserve.workflow.tenants.models import tenant_quotas


@dataclass(frozen=True, slots=True)
class LeaseRow:
    """Where a job stands for the holder of one of its leases."""

    job_id: UUID
    status: JobStatus
    attempt: int
    worker_id: str | None
    cancel_requested: bool


def _grant(
    worker_id: str | ColumnElement[str],
    now: datetime | ColumnElement[datetime],
    lease_until: datetime | ColumnElement[datetime],
) -> dict[str, Any]:
    # A new attempt owns no outputs yet: only the attempt that ends the job
    # has outputs, the ones of earlier attempts are not the job's.
    return {
        "status": JobStatus.RUNNING.value,
        "worker_id": worker_id,
        "attempt": jobs.c.attempt + 1,
        "started_at": now,
        "lease_expires_at": lease_until,
        "progress": None,
        "outputs": [],
        "updated_at": now,
    }


async def claim_next(
    conn: AsyncConnection,
    *,
    pool: str,
    worker_id: str,
    now: datetime,
    lease_until: datetime,
    max_attempts: int,
    default_max_running: int,
) -> JobRecord | None:
    """Grant the first pending job of `pool` (priority, then age) to
    `worker_id`, skipping tenants running as many jobs as their quota allows;
    rows other claimers hold are skipped, so each job goes to one claimer.
    The grant's `NOTIFY` on the jobs channel goes out at commit.

    The quota is read twice: in the search, which skips tenants at their limit
    cheaply and takes the found tenant's lock, and again in the grant, where
    it is exact: the grant's statement starts after the lock was taken, so it
    counts every grant to the tenant that committed before, and claims of one
    tenant's jobs queue on that lock, so two claimers never both take the
    tenant's last free slot. Two statements a claim, whatever the tenant.
    """
    at_limit: set[str] = set()
    while True:
        candidate = await _first_claimable(
            conn, pool, now, max_attempts, default_max_running, at_limit
        )
        if candidate is None:
            return None
        job_id, tenant_id = candidate
        params = {
            "grant_job_id": job_id,
            "grant_tenant_id": tenant_id,
            "grant_default_max_running": default_max_running,
            "grant_worker_id": worker_id,
            "grant_now": now,
            "grant_lease_until": lease_until,
            "grant_shard": queue_repository.random_shard(),
        }
        row = (await conn.execute(_grant_within_limit(), params)).first()
        if row is not None:
            return job_from_row(row)
        at_limit.add(tenant_id)


async def _first_claimable(
    conn: AsyncConnection,
    pool: str,
    now: datetime,
    max_attempts: int,
    default_max_running: int,
    at_limit: set[str],
) -> tuple[UUID, str] | None:
    """The first pending job of `pool` whose tenant has a free running slot,
    locked, and its tenant's running lock taken; its id and tenant."""
    params = {
        "claim_pool": pool,
        "claim_now": now,
        "claim_max_attempts": max_attempts,
        "claim_default_max_running": default_max_running,
        "claim_at_limit": sorted(at_limit),
    }
    row = (await conn.execute(_claimable_search(), params)).first()
    return None if row is None else (row.id, row.tenant_id)


def _running_of(tenant_id: ColumnElement[str]) -> ColumnElement[int]:
    """How many jobs of the tenant run, as SQL."""
    running = jobs.alias("running")
    return (
        select(func.count())
        .where(
            running.c.tenant_id == tenant_id,
            running.c.status == literal_column("'running'"),
        )
        .scalar_subquery()
    )


def _running_limit(
    tenant_id: ColumnElement[str], default: ColumnElement[int]
) -> ColumnElement[int]:
    """The tenant's own running limit, or `default` when it has none, as SQL."""
    own = (
        select(tenant_quotas.c.max_running)
        .where(tenant_quotas.c.tenant_id == tenant_id)
        .scalar_subquery()
    )
    return func.coalesce(own, default)


@functools.cache
def _claimable_search() -> Select[Any]:
    """`_first_claimable`'s statement over bound parameters, built once: a
    claim runs it on every wake of every waiting executor."""
    tenant_running = _running_of(jobs.c.tenant_id)
    tenant_limit = _running_limit(
        jobs.c.tenant_id, bindparam("claim_default_max_running", type_=Integer)
    )
    at_limit = bindparam("claim_at_limit", type_=Text, expanding=True)
    found = (
        select(jobs.c.id, jobs.c.tenant_id)
        .where(
            IS_PENDING,
            jobs.c.pool == bindparam("claim_pool", type_=Text),
            jobs.c.cancel_requested.is_(False),
            jobs.c.attempt < bindparam("claim_max_attempts", type_=Integer),
            jobs.c.deadline > bindparam("claim_now", type_=jobs.c.deadline.type),
            tenant_running < tenant_limit,
            jobs.c.tenant_id.not_in(at_limit),
        )
        .order_by(jobs.c.priority_rank, jobs.c.created_at, jobs.c.id)
        .limit(1)
        .with_for_update(of=jobs, skip_locked=True)
        .subquery("found")
    )
    # The lock is taken on the row found, after the row's own lock: the order
    # every grant takes them in, so claimers never wait on each other in a
    # cycle.
    return select(
        found.c.id, found.c.tenant_id, tenants.running_lock(found.c.tenant_id)
    )


@functools.cache
def _grant_within_limit() -> Select[Any]:
    """The grant of a job `claim_next` found, when its tenant is below its
    running limit by an exact count, with the queue's depth counted down and
    the grant's notification: one statement over bound parameters, built once.
    No row when the tenant is at its limit."""
    tenant_id = bindparam("grant_tenant_id", type_=Text)
    running_now = _running_of(tenant_id)
    limit = _running_limit(
        tenant_id, bindparam("grant_default_max_running", type_=Integer)
    )
    now = bindparam("grant_now", type_=jobs.c.started_at.type)
    granted = (
        update(jobs)
        .where(
            jobs.c.id == bindparam("grant_job_id", type_=jobs.c.id.type),
            running_now < limit,
        )
        .values(
            _grant(
                bindparam("grant_worker_id", type_=Text),
                now,
                bindparam("grant_lease_until", type_=jobs.c.lease_expires_at.type),
            )
        )
        .returning(*JOB_COLUMNS, jobs.c.priority_rank)
        .cte("granted")
    )
    counted = queue_repository.count_in(
        granted.c.pool,
        granted.c.priority_rank,
        bindparam("grant_shard", type_=SmallInteger),
        granted,
        delta=-1,
    )
    notify = func.pg_notify(JOBS_CHANNEL, cast(granted.c.id, Text))
    # `pg_notify` returns void, which is never null: the condition only makes
    # the statement send the notification for the granted row.
    return (
        select(*(granted.c[column.name] for column in JOB_COLUMNS))
        .where(notify.is_not(None))
        .add_cte(counted)
    )


async def tenant_at_limit(
    conn: AsyncConnection, tenant_id: str, default_max_running: int
) -> bool:
    """Whether the tenant runs as many jobs as its quota allows, exactly: the
    tenant's lock, held until the caller's transaction ends, keeps the count
    true until a grant commits."""
    await tenants.lock_running(conn, tenant_id)
    own = (await tenants.limits(conn, tenant_id)).max_running
    running = await tenants.count_running(conn, tenant_id)
    return running >= (own or default_max_running)


def claimable(job: JobRecord, now: datetime, max_attempts: int) -> bool:
    """Free to run: pending, or running under a lease that lapsed."""
    if job.cancel_requested or job.attempt >= max_attempts:
        return False
    if job.status is JobStatus.PENDING:
        return True
    return job.status is JobStatus.RUNNING and (
        job.lease_expires_at is None or job.lease_expires_at < now
    )


async def grant(
    conn: AsyncConnection,
    job: JobRecord,
    *,
    worker_id: str,
    now: datetime,
    lease_until: datetime,
) -> JobRecord:
    """Grant a job the caller has locked and found `claimable`."""
    query = (
        update(jobs)
        .where(jobs.c.id == job.id)
        .values(_grant(worker_id, now, lease_until))
        .returning(*JOB_COLUMNS)
    )
    granted = job_from_row((await conn.execute(query)).one())
    if job.status is JobStatus.PENDING:
        await queue_repository.adjust_depth(conn, job.pool, job.priority, -1)
    return granted


async def renew_leases(
    conn: AsyncConnection,
    *,
    worker_id: str,
    leases: Sequence[tuple[UUID, int]],
    until: datetime,
) -> dict[UUID, bool]:
    """Extend the leases `worker_id` still holds; the renewed jobs, each with
    whether a cancel was requested. A lapsed lease nobody took over renews too."""
    if not leases:
        return {}
    query = (
        update(jobs)
        .where(
            tuple_(jobs.c.id, jobs.c.attempt).in_(list(leases)),
            jobs.c.worker_id == worker_id,
            IS_RUNNING,
        )
        .values(lease_expires_at=until)
        .returning(jobs.c.id, jobs.c.cancel_requested)
    )
    return {row.id: row.cancel_requested for row in await conn.execute(query)}


async def lease_rows(conn: AsyncConnection, job_ids: Sequence[UUID]) -> list[LeaseRow]:
    query = select(
        jobs.c.id,
        jobs.c.status,
        jobs.c.attempt,
        jobs.c.worker_id,
        jobs.c.cancel_requested,
    ).where(jobs.c.id.in_(list(job_ids)))
    return [
        LeaseRow(
            job_id=row.id,
            status=JobStatus(row.status),
            attempt=row.attempt,
            worker_id=row.worker_id,
            cancel_requested=row.cancel_requested,
        )
        for row in await conn.execute(query)
    ]


async def lapsed_leases(
    conn: AsyncConnection, before: datetime, limit: int
) -> list[JobRecord]:
    """Running jobs whose lease ran out before `before`: their worker stopped
    renewing it (died, hung, or lost the workflow service for that long)."""
    query = (
        select(*SUMMARY_COLUMNS)
        .where(IS_RUNNING, jobs.c.lease_expires_at < before)
        .order_by(jobs.c.lease_expires_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return [job_from_row(row) for row in await conn.execute(query)]
