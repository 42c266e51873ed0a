"""Every query on jobs, their event log and idempotency keys. Never commits."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import (
    Row,
    delete,
    func,
    insert,
    literal_column,
    select,
    tuple_,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from comfyserve.contracts.events import Event, Priority
from comfyserve.workflow.jobs.cursor import Cursor
from comfyserve.workflow.jobs.models import (
    PRIORITY_RANK,
    JobRecord,
    JobStatus,
    idempotency_keys,
    job_events,
    jobs,
    queue_depth,
)

_COLUMNS = [column for column in jobs.c if column.name != "priority_rank"]
# What a listing or a watch reads: everything but the graph and its inputs,
# which can run to megabytes.
_SUMMARY_COLUMNS = [
    column
    for column in _COLUMNS
    if column.name not in ("workflow", "inputs", "file_inputs")
]
_MUTABLE = (
    "status",
    "attempt",
    "worker_id",
    "lease_expires_at",
    "started_at",
    "completed_at",
    "progress",
    "outputs",
    "error",
    "cancel_requested",
    "duration_seconds",
)
# Literals, as the partial indexes have them: with a bound parameter Postgres
# cannot match the index once it switches to a generic plan.
_PENDING = jobs.c.status == literal_column("'pending'")
_RUNNING = jobs.c.status == literal_column("'running'")
_DEPTH_SHARDS = 8


@dataclass(frozen=True, slots=True)
class IdempotencyRecord:
    request_hash: str
    job_id: UUID


@dataclass(frozen=True, slots=True)
class LeaseRow:
    """Where a job stands for the holder of one of its leases."""

    job_id: UUID
    status: JobStatus
    attempt: int
    worker_id: str | None
    cancel_requested: bool


def _record(row: Row[Any]) -> JobRecord:
    values = dict(row._mapping)
    values.pop("priority_rank", None)
    values["status"] = JobStatus(values["status"])
    values["priority"] = Priority(values["priority"])
    return JobRecord(**values)


def _fields(job: JobRecord) -> dict[str, Any]:
    return {column.name: getattr(job, column.name) for column in _COLUMNS}


async def insert_job(conn: AsyncConnection, job: JobRecord) -> None:
    values = _fields(job)
    values["status"] = job.status.value
    values["priority"] = job.priority.value
    await conn.execute(insert(jobs).values(values))
    if job.status is JobStatus.PENDING:
        await adjust_depth(conn, job.pool, job.priority, 1)


async def get_job(
    conn: AsyncConnection,
    job_id: UUID,
    *,
    tenant_id: str | None = None,
    for_update: bool = False,
    with_graph: bool = True,
) -> JobRecord | None:
    query = select(*(_COLUMNS if with_graph else _SUMMARY_COLUMNS)).where(
        jobs.c.id == job_id
    )
    if tenant_id is not None:
        query = query.where(jobs.c.tenant_id == tenant_id)
    if for_update:
        query = query.with_for_update()
    row = (await conn.execute(query)).first()
    return None if row is None else _record(row)


async def save_job(conn: AsyncConnection, job: JobRecord, now: datetime) -> None:
    """Write the state-machine fields of `job` back to its row."""
    values = {name: getattr(job, name) for name in _MUTABLE}
    values["status"] = job.status.value
    values["updated_at"] = now
    await conn.execute(update(jobs).where(jobs.c.id == job.id).values(values))


async def adjust_depth(
    conn: AsyncConnection, pool: str, priority: Priority, delta: int
) -> None:
    """Count a job into (or out of) the pending queue of its pool and priority.

    Submits and claims add to one of a few shards at random, so they do not
    all wait on one row's lock; readers sum the shards.
    """
    statement = pg_insert(queue_depth).values(
        pool=pool,
        priority_rank=PRIORITY_RANK[priority],
        shard=random.randrange(_DEPTH_SHARDS),
        pending=delta,
    )
    await conn.execute(
        statement.on_conflict_do_update(
            index_elements=[
                queue_depth.c.pool,
                queue_depth.c.priority_rank,
                queue_depth.c.shard,
            ],
            set_={"pending": queue_depth.c.pending + statement.excluded.pending},
        )
    )


async def pending_through(conn: AsyncConnection, pool: str, priority: Priority) -> int:
    """Pending jobs of `pool` at `priority` or higher: a job just queued at the
    back of `priority` has this position."""
    query = select(func.coalesce(func.sum(queue_depth.c.pending), 0)).where(
        queue_depth.c.pool == pool,
        queue_depth.c.priority_rank <= PRIORITY_RANK[priority],
    )
    return int((await conn.execute(query)).scalar_one())


async def queue_position(conn: AsyncConnection, job: JobRecord) -> int:
    """1 + the pending jobs a worker of the job's pool takes before it.

    Higher priorities come from the depth counters; the job's own priority is
    a range of the dispatch index ahead of it, never a scan of the queue.
    """
    rank = PRIORITY_RANK[job.priority]
    higher = select(func.coalesce(func.sum(queue_depth.c.pending), 0)).where(
        queue_depth.c.pool == job.pool, queue_depth.c.priority_rank < rank
    )
    same = (
        select(func.count())
        .select_from(jobs)
        .where(
            _PENDING,
            jobs.c.pool == job.pool,
            jobs.c.priority_rank == rank,
            tuple_(jobs.c.created_at, jobs.c.id) < tuple_(job.created_at, job.id),
        )
    )
    query = select(higher.scalar_subquery(), same.scalar_subquery())
    ahead_higher, ahead_same = (await conn.execute(query)).one()
    return 1 + int(ahead_higher) + int(ahead_same)


async def depths(conn: AsyncConnection) -> dict[tuple[str, int], int]:
    """Pending jobs per (pool, priority rank)."""
    query = select(
        queue_depth.c.pool,
        queue_depth.c.priority_rank,
        func.sum(queue_depth.c.pending).label("pending"),
    ).group_by(queue_depth.c.pool, queue_depth.c.priority_rank)
    return {
        (row.pool, row.priority_rank): int(row.pending)
        for row in await conn.execute(query)
    }


async def list_jobs(
    conn: AsyncConnection,
    tenant_id: str,
    *,
    statuses: Sequence[JobStatus],
    after: Cursor | None,
    limit: int,
) -> list[JobRecord]:
    query = select(*_SUMMARY_COLUMNS).where(jobs.c.tenant_id == tenant_id)
    if statuses:
        query = query.where(jobs.c.status.in_([status.value for status in statuses]))
    if after is not None:
        query = query.where(
            tuple_(jobs.c.created_at, jobs.c.id)
            < tuple_(after.created_at, after.job_id)
        )
    query = query.order_by(jobs.c.created_at.desc(), jobs.c.id.desc()).limit(limit)
    return [_record(row) for row in await conn.execute(query)]


def _grant(worker_id: str, now: datetime, lease_until: datetime) -> dict[str, Any]:
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
) -> JobRecord | None:
    """Grant the first pending job of `pool` (priority, then age) to
    `worker_id`; rows other claimers hold are skipped, so each job goes to one
    claimer."""
    first = (
        select(jobs.c.id)
        .where(
            _PENDING,
            jobs.c.pool == pool,
            jobs.c.cancel_requested.is_(False),
            jobs.c.attempt < max_attempts,
            jobs.c.deadline > now,
        )
        .order_by(jobs.c.priority_rank, jobs.c.created_at, jobs.c.id)
        .limit(1)
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    query = (
        update(jobs)
        .where(jobs.c.id == first)
        .values(_grant(worker_id, now, lease_until))
        .returning(*_COLUMNS)
    )
    row = (await conn.execute(query)).first()
    if row is None:
        return None
    job = _record(row)
    await adjust_depth(conn, job.pool, job.priority, -1)
    return job


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
        .returning(*_COLUMNS)
    )
    granted = _record((await conn.execute(query)).one())
    if job.status is JobStatus.PENDING:
        await adjust_depth(conn, job.pool, job.priority, -1)
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
            _RUNNING,
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


async def past_deadline(
    conn: AsyncConnection, before: datetime, limit: int
) -> list[JobRecord]:
    """Unfinished jobs whose deadline is before `before`, locked, skipping
    rows another instance holds."""
    query = (
        select(*_SUMMARY_COLUMNS)
        .where(
            jobs.c.status.in_([JobStatus.PENDING.value, JobStatus.RUNNING.value]),
            jobs.c.deadline < before,
        )
        .order_by(jobs.c.deadline)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return [_record(row) for row in await conn.execute(query)]


async def lapsed_leases(
    conn: AsyncConnection, before: datetime, limit: int
) -> list[JobRecord]:
    """Running jobs whose lease ran out before `before`: their worker stopped
    renewing it (died, hung, or lost the workflow service for that long)."""
    query = (
        select(*_SUMMARY_COLUMNS)
        .where(_RUNNING, jobs.c.lease_expires_at < before)
        .order_by(jobs.c.lease_expires_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return [_record(row) for row in await conn.execute(query)]


async def record_event(conn: AsyncConnection, job_id: UUID, event: Event) -> bool:
    """Add the event to the job's log; False if its id was seen before."""
    query = (
        pg_insert(job_events)
        .values(
            id=event.id,
            job_id=job_id,
            type=event.type,
            time=event.time,
            payload=event.model_dump(mode="json"),
        )
        .on_conflict_do_nothing(index_elements=[job_events.c.id])
        .returning(job_events.c.id)
    )
    return (await conn.execute(query)).first() is not None


async def find_idempotency(
    conn: AsyncConnection, tenant_id: str, key: str, *, not_before: datetime
) -> IdempotencyRecord | None:
    query = select(idempotency_keys.c.request_hash, idempotency_keys.c.job_id).where(
        idempotency_keys.c.tenant_id == tenant_id,
        idempotency_keys.c.key == key,
        idempotency_keys.c.created_at >= not_before,
    )
    row = (await conn.execute(query)).first()
    return None if row is None else IdempotencyRecord(row.request_hash, row.job_id)


async def insert_idempotency(
    conn: AsyncConnection,
    *,
    tenant_id: str,
    key: str,
    request_hash: str,
    job_id: UUID,
    now: datetime,
    expired_before: datetime,
) -> bool:
    """Record the key; False when a live record holds it already. An expired
    record that the sweeper has not deleted yet is taken over."""
    statement = pg_insert(idempotency_keys).values(
        tenant_id=tenant_id,
        key=key,
        request_hash=request_hash,
        job_id=job_id,
        created_at=now,
    )
    query = statement.on_conflict_do_update(
        index_elements=[idempotency_keys.c.tenant_id, idempotency_keys.c.key],
        set_={
            "request_hash": statement.excluded.request_hash,
            "job_id": statement.excluded.job_id,
            "created_at": statement.excluded.created_at,
        },
        where=idempotency_keys.c.created_at < expired_before,
    ).returning(idempotency_keys.c.key)
    return (await conn.execute(query)).first() is not None


async def delete_expired_idempotency(conn: AsyncConnection, before: datetime) -> int:
    result = await conn.execute(
        delete(idempotency_keys).where(idempotency_keys.c.created_at < before)
    )
    return int(result.rowcount)
