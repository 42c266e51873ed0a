"""The pending queue's counters (`queue_depth`, per pool and priority, in a
few shards) and a job's place in it. Never commits."""

from __future__ import annotations

import random

from sqlalchemy import func, select, tuple_
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from comfyserve.contracts.events import Priority
from comfyserve.workflow.jobs.models import (
    IS_PENDING,
    PRIORITY_RANK,
    JobRecord,
    jobs,
    queue_depth,
)

_DEPTH_SHARDS = 8


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
            IS_PENDING,
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
