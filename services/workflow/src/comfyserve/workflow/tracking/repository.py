"""The query that applies a batch of executor events: one statement for the
whole batch, never one per event. Never commits."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from uuid import UUID

from sqlalchemy import (
    ARRAY,
    DateTime,
    Select,
    Text,
    Uuid,
    any_,
    bindparam,
    cast,
    func,
    or_,
    select,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from comfyserve.contracts.events import Event
from comfyserve.runtime.database import unnested
from comfyserve.workflow.jobs.models import (
    SUMMARY_COLUMNS,
    JobRecord,
    job_events,
    job_from_values,
    jobs,
)


def _lock_and_record() -> Select[Any]:
    # Locked first, in id order, so that two batches sharing jobs wait on
    # each other rather than deadlock; MATERIALIZED keeps it one scan whose
    # rows both the insert and the answer read.
    locked = (
        select(*SUMMARY_COLUMNS)
        .where(jobs.c.id == any_(bindparam("job_ids", type_=ARRAY(Uuid))))
        .order_by(jobs.c.id)
        .with_for_update()
        .cte("locked")
        .prefix_with("MATERIALIZED")
    )
    given = unnested(
        {
            "id": bindparam("event_ids", type_=ARRAY(Uuid)),
            "job_id": bindparam("event_jobs", type_=ARRAY(Uuid)),
            "tenant_id": bindparam("event_tenants", type_=ARRAY(Text)),
            "type": bindparam("event_types", type_=ARRAY(Text)),
            "time": bindparam("event_times", type_=ARRAY(DateTime(timezone=True))),
            "payload": bindparam("event_payloads", type_=ARRAY(Text)),
        }
    )
    # An event that names a tenant is the job's only when it names the job's.
    known = (
        select(given.c.id, given.c.job_id, given.c.type, given.c.time)
        .add_columns(cast(given.c.payload, JSONB))
        .join(locked, locked.c.id == given.c.job_id)
        .where(or_(given.c.tenant_id == "", given.c.tenant_id == locked.c.tenant_id))
    )
    recorded = (
        pg_insert(job_events)
        .from_select(["id", "job_id", "type", "time", "payload"], known)
        .on_conflict_do_nothing(index_elements=[job_events.c.id])
        .returning(job_events.c.id)
        .cte("recorded")
    )
    new = select(func.array_agg(recorded.c.id)).scalar_subquery()
    return select(locked, new.label("new_event_ids"))


_LOCK_AND_RECORD = _lock_and_record()


async def lock_and_record(
    conn: AsyncConnection, job_ids: Sequence[UUID], events: Sequence[tuple[UUID, Event]]
) -> tuple[dict[UUID, JobRecord], set[UUID]]:
    """Lock the jobs of `job_ids` that exist, until the transaction ends, and
    add each `(job id, event)` to its job's log when the job is locked and
    the event names no other tenant than the job's: the locked jobs, without
    their graphs, and the ids of the events not seen before. One statement
    (one round trip) for both."""
    if not job_ids:
        return {}, set()
    rows = (
        await conn.execute(
            _LOCK_AND_RECORD,
            {
                "job_ids": list(job_ids),
                "event_ids": [event.id for _, event in events],
                "event_jobs": [job_id for job_id, _ in events],
                "event_tenants": [event.tenant_id or "" for _, event in events],
                "event_types": [event.type for _, event in events],
                "event_times": [event.time for _, event in events],
                "event_payloads": [event.model_dump_json() for _, event in events],
            },
        )
    ).all()
    locked: dict[UUID, JobRecord] = {}
    new: set[UUID] = set()
    for row in rows:
        values = dict(row._mapping)
        new = set(values.pop("new_event_ids") or ())
        locked[row.id] = job_from_values(values)
    return locked, new
