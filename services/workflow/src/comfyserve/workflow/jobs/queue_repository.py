"""The pending queue's counters (`queue_depth`, per pool and priority, in a
few shards) and a job's place in it. Never commits."""

from __future__ import annotations

import random
from typing import Any

from sqlalchemy import (
    CTE,
    ColumnElement,
    FromClause,
    ScalarSelect,
    case,
    func,
    literal,
    select,
    tuple_,
)
from sqlalchemy.dialects.postgresql import Insert
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
# Below this many jobs ahead a position counts them; above, the jobs behind.
_COUNT_AHEAD_LIMIT = 1000


def _adding(statement: Insert) -> Insert:
    """`statement` (an insert into `queue_depth`) adds its `pending` to a
    shard's row that exists already."""
    return statement.on_conflict_do_update(
        index_elements=[
            queue_depth.c.pool,
            queue_depth.c.priority_rank,
            queue_depth.c.shard,
        ],
        set_={"pending": queue_depth.c.pending + statement.excluded.pending},
    )


async def adjust_depth(
    conn: AsyncConnection, pool: str, priority: Priority, delta: int
) -> None:
    """Count a job into (or out of) the pending queue of its pool and priority.

    Submits and claims add to one of a few shards at random, so they do not
    all wait on one row's lock; readers sum the shards.
    """
    await conn.execute(depth_change(pool, priority, delta))


def depth_change(pool: str, priority: Priority, delta: int) -> Insert:
    """The statement of `adjust_depth`."""
    statement = pg_insert(queue_depth).values(
        pool=pool,
        priority_rank=PRIORITY_RANK[priority],
        shard=random_shard(),
        pending=delta,
    )
    return _adding(statement)


def random_shard() -> int:
    """The depth shard a submit or claim counts its change in."""
    return random.randrange(_DEPTH_SHARDS)


def count_in(
    pool: ColumnElement[str],
    rank: ColumnElement[int],
    shard: ColumnElement[int],
    rows: FromClause,
    delta: int = 1,
) -> CTE:
    """`adjust_depth` by `delta` for each row of `rows` (the job just inserted
    or granted, or none), as a CTE of the statement that writes it."""
    counted = select(pool, rank, shard, literal(delta)).select_from(rows)
    columns = ["pool", "priority_rank", "shard", "pending"]
    statement = pg_insert(queue_depth).from_select(columns, counted)
    return _adding(statement).cte("counted")


def pending_through(
    pool: ColumnElement[str], rank: ColumnElement[int]
) -> ScalarSelect[Any]:
    """Pending jobs of `pool` at priority rank `rank` or higher, by the
    counters as the statement reading them sees them."""
    return (
        select(func.coalesce(func.sum(queue_depth.c.pending), 0))
        .where(queue_depth.c.pool == pool, queue_depth.c.priority_rank <= rank)
        .scalar_subquery()
    )


async def queue_position(conn: AsyncConnection, job: JobRecord) -> int:
    """1 + the pending jobs a worker of the job's pool takes before it.

    Higher priorities come from the depth counters. Of the job's own priority,
    the side of it that is shorter is counted in the dispatch index: the jobs
    ahead when there are fewer than `_COUNT_AHEAD_LIMIT`, else the depth
    counter less the jobs behind it. Jobs near the head (served next) and the
    back (just submitted) of a 10^5-job queue so cost a short range, never a
    count of the whole queue. One statement, so every part reads one snapshot
    (the counters change in the transactions that queue and unqueue jobs).
    """
    rank = PRIORITY_RANK[job.priority]
    mine = tuple_(job.created_at, job.id)
    key = tuple_(jobs.c.created_at, jobs.c.id)
    same_rank = (IS_PENDING, jobs.c.pool == job.pool, jobs.c.priority_rank == rank)

    def depth(*where: ColumnElement[bool]) -> ScalarSelect[Any]:
        return (
            select(func.coalesce(func.sum(queue_depth.c.pending), 0))
            .where(queue_depth.c.pool == job.pool, *where)
            .scalar_subquery()
        )

    ahead = (
        select(jobs.c.id).where(*same_rank, key < mine).limit(_COUNT_AHEAD_LIMIT)
    ).subquery()
    ahead_count = select(func.count()).select_from(ahead).scalar_subquery()
    behind = (
        select(func.count()).select_from(jobs).where(*same_rank, key > mine)
    ).scalar_subquery()
    # Postgres evaluates an uncorrelated subquery only when first needed, so
    # `behind` runs only when the jobs ahead reached the limit.
    same = case(
        (ahead_count < _COUNT_AHEAD_LIMIT, ahead_count),
        else_=depth(queue_depth.c.priority_rank == rank) - 1 - behind,
    )
    query = select(depth(queue_depth.c.priority_rank < rank), same)
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
