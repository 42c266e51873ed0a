"""Every query on jobs, their event log and idempotency keys. Never commits."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import (
    ColumnElement,
    Row,
    and_,
    delete,
    exists,
    func,
    insert,
    or_,
    select,
    tuple_,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from comfyserve.contracts.events import Event, Priority
from comfyserve.workflow.jobs.cursor import Cursor
from comfyserve.workflow.jobs.models import (
    JobRecord,
    JobStatus,
    idempotency_keys,
    job_events,
    jobs,
)
from comfyserve.workflow.workers.models import workers

_COLUMNS = [column for column in jobs.c if column.name != "priority_rank"]
_MUTABLE = (
    "status",
    "attempt",
    "worker_id",
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


async def get_job(
    conn: AsyncConnection,
    job_id: UUID,
    *,
    tenant_id: str | None = None,
    for_update: bool = False,
) -> JobRecord | None:
    query = select(*_COLUMNS).where(jobs.c.id == job_id)
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


async def queue_position(conn: AsyncConnection, job: JobRecord) -> int:
    """1 + the pending jobs that a worker takes before this one."""
    rank = select(jobs.c.priority_rank).where(jobs.c.id == job.id).scalar_subquery()
    ahead = or_(
        jobs.c.priority_rank < rank,
        and_(
            jobs.c.priority_rank == rank,
            tuple_(jobs.c.created_at, jobs.c.id) < tuple_(job.created_at, job.id),
        ),
    )
    query = (
        select(func.count())
        .select_from(jobs)
        .where(jobs.c.status == JobStatus.PENDING.value, ahead)
    )
    return 1 + int((await conn.execute(query)).scalar_one())


async def list_jobs(
    conn: AsyncConnection,
    tenant_id: str,
    *,
    statuses: Sequence[JobStatus],
    after: Cursor | None,
    limit: int,
) -> list[JobRecord]:
    query = select(*_COLUMNS).where(jobs.c.tenant_id == tenant_id)
    if statuses:
        query = query.where(jobs.c.status.in_([status.value for status in statuses]))
    if after is not None:
        query = query.where(
            tuple_(jobs.c.created_at, jobs.c.id)
            < tuple_(after.created_at, after.job_id)
        )
    query = query.order_by(jobs.c.created_at.desc(), jobs.c.id.desc()).limit(limit)
    return [_record(row) for row in await conn.execute(query)]


def _worker_alive(stale_before: datetime) -> ColumnElement[bool]:
    return exists(
        select(1)
        .select_from(workers)
        .where(
            workers.c.worker_id == jobs.c.worker_id,
            workers.c.last_heartbeat >= stale_before,
        )
    )


def _claimable(stale_before: datetime) -> ColumnElement[bool]:
    return and_(
        jobs.c.cancel_requested.is_(False),
        or_(
            jobs.c.status == JobStatus.PENDING.value,
            and_(
                jobs.c.status == JobStatus.RUNNING.value,
                ~_worker_alive(stale_before),
            ),
        ),
    )


async def claim(
    conn: AsyncConnection,
    job_id: UUID,
    *,
    tenant_id: str,
    worker_id: str,
    now: datetime,
    stale_before: datetime,
    max_attempts: int,
) -> JobRecord | None:
    """Grant the job to `worker_id` in one conditional update; None if refused."""
    query = (
        update(jobs)
        .where(
            jobs.c.id == job_id,
            jobs.c.tenant_id == tenant_id,
            jobs.c.attempt < max_attempts,
            _claimable(stale_before),
        )
        .values(
            status=JobStatus.RUNNING.value,
            worker_id=worker_id,
            attempt=jobs.c.attempt + 1,
            started_at=now,
            progress=None,
            updated_at=now,
        )
        .returning(*_COLUMNS)
    )
    row = (await conn.execute(query)).first()
    return None if row is None else _record(row)


async def is_claimable(
    conn: AsyncConnection, job_id: UUID, *, stale_before: datetime
) -> bool:
    """Whether the job is free to run apart from its attempt count."""
    query = select(jobs.c.id).where(jobs.c.id == job_id, _claimable(stale_before))
    return (await conn.execute(query)).first() is not None


async def past_deadline(
    conn: AsyncConnection, before: datetime, limit: int
) -> list[JobRecord]:
    """Unfinished jobs whose deadline is before `before`, locked, skipping
    rows another instance holds."""
    query = (
        select(*_COLUMNS)
        .where(
            jobs.c.status.in_([JobStatus.PENDING.value, JobStatus.RUNNING.value]),
            jobs.c.deadline < before,
        )
        .order_by(jobs.c.deadline)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return [_record(row) for row in await conn.execute(query)]


async def running_on_stale_workers(
    conn: AsyncConnection, stale_before: datetime, limit: int
) -> list[JobRecord]:
    """Running jobs whose worker has not heartbeated since `stale_before`.

    A job claimed after `stale_before` is left alone: its worker has not had
    the time to show it is alive.
    """
    query = (
        select(*_COLUMNS)
        .where(
            jobs.c.status == JobStatus.RUNNING.value,
            jobs.c.started_at < stale_before,
            ~_worker_alive(stale_before),
        )
        .order_by(jobs.c.started_at)
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
