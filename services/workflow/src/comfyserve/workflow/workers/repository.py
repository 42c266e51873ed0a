"""Queries on workers and the pools' node catalogs. Never commits."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Column, Table, and_, delete, exists, select
from sqlalchemy.dialects.postgresql import Insert
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from comfyserve.workflow.workers.models import pool_catalogs, workers


@dataclass(frozen=True, slots=True)
class CatalogVersion:
    pool: str
    catalog_hash: str
    # Whether a worker of the pool was heard from lately.
    live: bool


@dataclass(frozen=True, slots=True)
class Heartbeat:
    worker_id: str
    pool: str
    at: datetime
    current_job_id: str | None
    info: dict[str, Any]


async def upsert_heartbeats(conn: AsyncConnection, beats: Sequence[Heartbeat]) -> None:
    """Record heartbeats in one statement, each worker's latest only (a row can
    be written once per statement); an older one never moves time back."""
    latest: dict[str, Heartbeat] = {}
    for beat in beats:
        known = latest.get(beat.worker_id)
        if known is None or known.at <= beat.at:
            latest[beat.worker_id] = beat
    if not latest:
        return
    rows = [
        {
            "worker_id": beat.worker_id,
            "pool": beat.pool,
            "last_heartbeat": beat.at,
            "current_job_id": beat.current_job_id,
            "info": beat.info,
        }
        for beat in latest.values()
    ]
    # Rows as executemany parameters: one statement all the same, compiled
    # once (a multi-row `values()` is compiled anew on every execution).
    await conn.execute(_UPSERT_HEARTBEAT, rows)


def _newer_wins(table: Table, key: Column[Any], stamp: Column[Any]) -> Insert:
    """An upsert on `key` that replaces every other column, unless the row
    there has a later `stamp`."""
    statement = pg_insert(table)
    return statement.on_conflict_do_update(
        index_elements=[key],
        set_={
            column.name: statement.excluded[column.name]
            for column in table.columns
            if column is not key
        },
        where=stamp <= statement.excluded[stamp.name],
    )


_UPSERT_HEARTBEAT = _newer_wins(workers, workers.c.worker_id, workers.c.last_heartbeat)
_UPSERT_CATALOG = _newer_wins(
    pool_catalogs, pool_catalogs.c.pool, pool_catalogs.c.updated_at
)


async def upsert_catalog(
    conn: AsyncConnection,
    *,
    pool: str,
    worker_id: str,
    catalog_hash: str,
    object_info: dict[str, Any],
    at: datetime,
) -> None:
    """The pool's catalog becomes what its latest publisher says: node types
    a pool no longer has stop validating."""
    await conn.execute(
        _UPSERT_CATALOG,
        {
            "pool": pool,
            "worker_id": worker_id,
            "catalog_hash": catalog_hash,
            "object_info": object_info,
            "updated_at": at,
        },
    )


async def catalog_versions(
    conn: AsyncConnection, seen_after: datetime
) -> frozenset[CatalogVersion]:
    """Each pool's catalog hash, and whether one of its workers was heard
    from after `seen_after`."""
    heard = exists(
        select(1).where(
            workers.c.pool == pool_catalogs.c.pool,
            workers.c.last_heartbeat > seen_after,
        )
    )
    query = select(pool_catalogs.c.pool, pool_catalogs.c.catalog_hash, heard)
    return frozenset(
        CatalogVersion(pool, catalog_hash, bool(live))
        for pool, catalog_hash, live in await conn.execute(query)
    )


async def object_infos(
    conn: AsyncConnection, pools: Collection[str]
) -> dict[str, dict[str, Any]]:
    query = select(pool_catalogs.c.pool, pool_catalogs.c.object_info).where(
        pool_catalogs.c.pool.in_(list(pools))
    )
    return {row.pool: row.object_info for row in await conn.execute(query)}


async def any_catalog(conn: AsyncConnection) -> bool:
    return bool(
        (await conn.execute(select(exists(select(pool_catalogs.c.pool))))).scalar()
    )


async def delete_workers_before(conn: AsyncConnection, before: datetime) -> int:
    result = await conn.execute(
        delete(workers).where(workers.c.last_heartbeat < before)
    )
    return int(result.rowcount)


async def delete_pools_unseen_since(conn: AsyncConnection, before: datetime) -> int:
    """Catalogs of pools nobody published or heartbeated for since `before`: a
    pool scaled to zero keeps validating until then, a removed one stops."""
    heard = exists(
        select(1).where(
            and_(
                workers.c.pool == pool_catalogs.c.pool,
                workers.c.last_heartbeat >= before,
            )
        )
    )
    result = await conn.execute(
        delete(pool_catalogs).where(pool_catalogs.c.updated_at < before, ~heard)
    )
    return int(result.rowcount)
