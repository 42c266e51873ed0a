"""The queries that apply a batch of executor events: each a statement for the
whole batch, never one per event. Never commits."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from uuid import UUID

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from comfyserve.contracts.events import Event
from comfyserve.workflow.jobs.models import (
    SUMMARY_COLUMNS,
    JobRecord,
    job_events,
    job_from_row,
    jobs,
)


async def lock_jobs(
    conn: AsyncConnection, job_ids: Collection[UUID]
) -> dict[UUID, JobRecord]:
    """The jobs that exist of `job_ids`, without their graphs, locked until the
    transaction ends. Rows are locked in id order, so two batches sharing jobs
    wait on each other rather than deadlock."""
    if not job_ids:
        return {}
    query = (
        select(*SUMMARY_COLUMNS)
        .where(jobs.c.id.in_(job_ids))
        .order_by(jobs.c.id)
        .with_for_update()
    )
    return {row.id: job_from_row(row) for row in await conn.execute(query)}


async def record_events(
    conn: AsyncConnection, events: Sequence[tuple[UUID, Event]]
) -> set[UUID]:
    """Add `(job id, event)` to the jobs' logs; the ids of the events not seen
    before."""
    if not events:
        return set()
    rows = [
        {
            "id": event.id,
            "job_id": job_id,
            "type": event.type,
            "time": event.time,
            "payload": event.model_dump(mode="json"),
        }
        for job_id, event in events
    ]
    # Rows as executemany parameters: SQLAlchemy sends them as one INSERT of
    # many VALUES all the same, and compiles it once (a multi-row `values()`
    # is compiled anew on every execution).
    return set((await conn.execute(_RECORD, rows)).scalars())


_RECORD = (
    pg_insert(job_events)
    .on_conflict_do_nothing(index_elements=[job_events.c.id])
    .returning(job_events.c.id)
)
