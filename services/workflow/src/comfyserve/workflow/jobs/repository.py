"""Every query on jobs, their event log and idempotency keys, but dispatch and
leases (`dispatch_repository`) and the queue counters (`queue_repository`).
Never commits."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import delete, exists, func, insert, select, tuple_, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from comfyserve.contracts.events import Event
from comfyserve.workflow.jobs import queue_repository
from comfyserve.workflow.jobs.cursor import Cursor
from comfyserve.workflow.jobs.models import (
    JOB_COLUMNS,
    SUMMARY_COLUMNS,
    JobOrder,
    JobRecord,
    JobStatus,
    idempotency_keys,
    job_events,
    job_from_row,
    jobs,
)

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


@dataclass(frozen=True, slots=True)
class IdempotencyRecord:
    request_hash: str
    job_id: UUID


def _fields(job: JobRecord) -> dict[str, Any]:
    return {column.name: getattr(job, column.name) for column in JOB_COLUMNS}


async def insert_job(conn: AsyncConnection, job: JobRecord) -> int:
    """Insert the job; answers the `number` its row was given."""
    values = _fields(job)
    values["status"] = job.status.value
    values["priority"] = job.priority.value
    if job.number is None:
        del values["number"]
    number = (
        await conn.execute(insert(jobs).values(values).returning(jobs.c.number))
    ).scalar_one()
    if job.status is JobStatus.PENDING:
        await queue_repository.adjust_depth(conn, job.pool, job.priority, 1)
    return int(number)


async def job_exists(conn: AsyncConnection, job_id: UUID) -> bool:
    """Whether any tenant's job has this id."""
    query = select(exists().where(jobs.c.id == job_id))
    return bool((await conn.execute(query)).scalar())


async def get_job(
    conn: AsyncConnection,
    job_id: UUID,
    *,
    tenant_id: str | None = None,
    for_update: bool = False,
    with_graph: bool = True,
) -> JobRecord | None:
    query = select(*(JOB_COLUMNS if with_graph else SUMMARY_COLUMNS)).where(
        jobs.c.id == job_id
    )
    if tenant_id is not None:
        query = query.where(jobs.c.tenant_id == tenant_id)
    if for_update:
        query = query.with_for_update()
    row = (await conn.execute(query)).first()
    return None if row is None else job_from_row(row)


async def save_job(conn: AsyncConnection, job: JobRecord, now: datetime) -> None:
    """Write the state-machine fields of `job` back to its row."""
    values = {name: getattr(job, name) for name in _MUTABLE}
    values["status"] = job.status.value
    values["updated_at"] = now
    await conn.execute(update(jobs).where(jobs.c.id == job.id).values(values))


async def list_jobs(
    conn: AsyncConnection,
    tenant_id: str,
    *,
    statuses: Sequence[JobStatus],
    after: Cursor | None,
    limit: int,
    with_graph: bool = False,
) -> list[JobRecord]:
    query = select(*(JOB_COLUMNS if with_graph else SUMMARY_COLUMNS)).where(
        jobs.c.tenant_id == tenant_id
    )
    if statuses:
        query = query.where(jobs.c.status.in_([status.value for status in statuses]))
    if after is not None:
        query = query.where(
            tuple_(jobs.c.created_at, jobs.c.id)
            < tuple_(after.created_at, after.job_id)
        )
    query = query.order_by(jobs.c.created_at.desc(), jobs.c.id.desc()).limit(limit)
    return [job_from_row(row) for row in await conn.execute(query)]


def _ordering(order: JobOrder) -> list[Any]:
    if order is JobOrder.OLDEST_FIRST:
        return [jobs.c.number]
    if order is JobOrder.LONGEST_FIRST:
        return [jobs.c.duration_seconds.desc().nulls_last(), jobs.c.number]
    if order is JobOrder.SHORTEST_FIRST:
        return [jobs.c.duration_seconds.asc().nulls_last(), jobs.c.number]
    return [jobs.c.number.desc()]


async def list_by_offset(
    conn: AsyncConnection,
    tenant_id: str,
    *,
    statuses: Sequence[JobStatus],
    order: JobOrder,
    offset: int,
    limit: int,
    with_graph: bool,
) -> list[JobRecord]:
    """A page of the tenant's jobs in `order` (never NEWEST, which pages by
    cursor)."""
    query = select(*(JOB_COLUMNS if with_graph else SUMMARY_COLUMNS)).where(
        jobs.c.tenant_id == tenant_id
    )
    if statuses:
        query = query.where(jobs.c.status.in_([status.value for status in statuses]))
    query = query.order_by(*_ordering(order)).offset(offset).limit(limit)
    return [job_from_row(row) for row in await conn.execute(query)]


async def count_jobs(
    conn: AsyncConnection, tenant_id: str, statuses: Sequence[JobStatus]
) -> int:
    query = select(func.count()).select_from(jobs).where(jobs.c.tenant_id == tenant_id)
    if statuses:
        query = query.where(jobs.c.status.in_([status.value for status in statuses]))
    return int((await conn.execute(query)).scalar_one())


async def past_deadline(
    conn: AsyncConnection, before: datetime, limit: int
) -> list[JobRecord]:
    """Unfinished jobs whose deadline is before `before`, locked, skipping
    rows another instance holds."""
    query = (
        select(*SUMMARY_COLUMNS)
        .where(
            jobs.c.status.in_([JobStatus.PENDING.value, JobStatus.RUNNING.value]),
            jobs.c.deadline < before,
        )
        .order_by(jobs.c.deadline)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return [job_from_row(row) for row in await conn.execute(query)]


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
