"""Every query on jobs, their event log and idempotency keys, but dispatch and
leases (`dispatch_repository`) and the queue counters (`queue_repository`).
Never commits."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import (
    CTE,
    ColumnElement,
    DateTime,
    Integer,
    Select,
    SmallInteger,
    Text,
    Update,
    Uuid,
    bindparam,
    delete,
    exists,
    func,
    insert,
    literal,
    select,
    text,
    tuple_,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from comfyserve.workflow.jobs import queue_repository
from comfyserve.workflow.jobs.cursor import Cursor
from comfyserve.workflow.jobs.models import (
    JOB_COLUMNS,
    PRIORITY_RANK,
    SUMMARY_COLUMNS,
    JobOrder,
    JobRecord,
    JobStatus,
    idempotency_keys,
    job_from_row,
    jobs,
)
from comfyserve.workflow.tenants import repository as tenants

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


@dataclass(frozen=True, slots=True)
class NewIdempotency:
    """An idempotency record to keep with a job being queued."""

    key: str
    request_hash: str
    # A record of the key older than this has expired and is taken over.
    expired_before: datetime


@dataclass(frozen=True, slots=True)
class Queued:
    """What `queue_job` did: `number` is None when the tenant's queue was
    full, `key_recorded` False when a live record holds the idempotency key;
    in either case the caller rolls the transaction back."""

    number: int | None
    key_recorded: bool
    # Pending jobs of the pool at the job's priority or higher, it included.
    position: int
    queued_limit: int


async def queue_job(
    conn: AsyncConnection,
    job: JobRecord,
    *,
    default_max_queued: int,
    idempotency: NewIdempotency | None,
    notifications: Sequence[tuple[str, str]],
) -> Queued:
    """Insert a pending job while its tenant's queue is below its limit (its
    own, else `default_max_queued`), count it into the queue's depth, record
    its idempotency key and queue `notifications` (channel, payload) for the
    commit: one statement, so one round trip.

    Every part reads one snapshot, taken when the statement starts; the
    position is the pending jobs ahead in it plus the job itself."""
    values = _fields(job)
    values["status"] = job.status.value
    values["priority"] = job.priority.value
    if job.number is None:
        del values["number"]
    query = _queue_statement(tuple(values), idempotency is not None, len(notifications))
    params: dict[str, Any] = {
        **values,
        "default_max_queued": default_max_queued,
        "priority_rank": PRIORITY_RANK[job.priority],
        "shard": queue_repository.random_shard(),
    }
    if idempotency is not None:
        params["request_hash"] = idempotency.request_hash
        params["expired_before"] = idempotency.expired_before
    for index, (channel, payload) in enumerate(notifications):
        params[f"channel_{index}"] = channel
        params[f"payload_{index}"] = payload
    result = (await conn.execute(query, params)).one()
    return Queued(
        number=None if result.number is None else int(result.number),
        key_recorded=bool(result.recorded),
        position=int(result.ahead) + 1,
        queued_limit=int(result.queued_limit),
    )


@functools.cache
def _queue_statement(
    columns: tuple[str, ...], with_key: bool, notifications: int
) -> Select[Any]:
    """`queue_job`'s statement over bound parameters, built once per shape:
    built anew each time, it cost more Python than the round trip it saves."""
    tenant_id = bindparam("tenant_id", type_=Text)
    limit = tenants.queued_limit(
        tenant_id, bindparam("default_max_queued", type_=Integer)
    )
    row = select(*(bindparam(name, type_=jobs.c[name].type) for name in columns)).where(
        tenants.below_limit(tenant_id, limit)
    )
    inserted = (
        insert(jobs).from_select(list(columns), row).returning(jobs.c.number)
    ).cte("inserted")
    pool = bindparam("pool", type_=Text)
    rank = bindparam("priority_rank", type_=SmallInteger)
    shard = bindparam("shard", type_=SmallInteger)
    ctes = [queue_repository.count_in(pool, rank, shard, inserted)]
    recorded: ColumnElement[Any] = literal(1)
    if with_key:
        kept = _keep_idempotency(inserted)
        ctes.append(kept)
        recorded = select(func.count()).select_from(kept).scalar_subquery()
    wake = (
        func.pg_notify(
            bindparam(f"channel_{index}", type_=Text),
            bindparam(f"payload_{index}", type_=Text),
        )
        for index in range(notifications)
    )
    return select(
        select(inserted.c.number).scalar_subquery().label("number"),
        recorded.label("recorded"),
        queue_repository.pending_through(pool, rank).label("ahead"),
        limit.label("queued_limit"),
        *wake,
    ).add_cte(*ctes)


def _keep_idempotency(inserted: CTE) -> CTE:
    """Record the job's idempotency key (`inserted` holds the job, or none:
    nothing recorded); a row unless a live record holds the key already. An
    expired record that the sweeper has not deleted yet is taken over."""
    row = select(
        bindparam("tenant_id", type_=Text),
        bindparam("idempotency_key", type_=Text),
        bindparam("request_hash", type_=Text),
        bindparam("id", type_=Uuid),
        bindparam("created_at", type_=DateTime(timezone=True)),
    ).select_from(inserted)
    columns = ["tenant_id", "key", "request_hash", "job_id", "created_at"]
    statement = pg_insert(idempotency_keys).from_select(columns, row)
    expired_before = bindparam("expired_before", type_=DateTime(timezone=True))
    return (
        statement.on_conflict_do_update(
            index_elements=[idempotency_keys.c.tenant_id, idempotency_keys.c.key],
            set_={
                "request_hash": statement.excluded.request_hash,
                "job_id": statement.excluded.job_id,
                "created_at": statement.excluded.created_at,
            },
            where=idempotency_keys.c.created_at < expired_before,
        )
        .returning(idempotency_keys.c.key)
        .cte("kept")
    )


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


def job_update(job: JobRecord, now: datetime) -> Update:
    """The statement that writes the state-machine fields of `job` back to
    its row."""
    values = {name: getattr(job, name) for name in _MUTABLE}
    values["status"] = job.status.value
    values["updated_at"] = now
    return update(jobs).where(jobs.c.id == job.id).values(values)


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


async def delete_finished_before(
    conn: AsyncConnection, before: datetime, limit: int
) -> int:
    """Deletes up to `limit` jobs that ended before `before`, oldest first,
    that no other sweeper is deleting, with their event logs and idempotency
    keys (by cascade); how many it deleted."""
    oldest = (
        select(jobs.c.id)
        # Spelled as the partial index `jobs_finished_idx` is, so that every
        # plan (a prepared statement's generic one too) can use it.
        .where(
            text("status IN ('completed', 'failed', 'cancelled')"),
            jobs.c.completed_at < before,
        )
        .order_by(jobs.c.completed_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    result = await conn.execute(delete(jobs).where(jobs.c.id.in_(oldest)))
    return int(result.rowcount)


async def delete_expired_idempotency(
    conn: AsyncConnection, before: datetime, limit: int
) -> int:
    """Deletes up to `limit` keys created before `before`, oldest first, that
    no other sweeper is deleting; how many it deleted."""
    oldest = (
        select(idempotency_keys.c.tenant_id, idempotency_keys.c.key)
        .where(idempotency_keys.c.created_at < before)
        .order_by(idempotency_keys.c.created_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    result = await conn.execute(
        delete(idempotency_keys).where(
            tuple_(idempotency_keys.c.tenant_id, idempotency_keys.c.key).in_(oldest)
        )
    )
    return int(result.rowcount)
