"""Queries on workers and their node catalogs. Never commits."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from comfyserve.workflow.workers.models import node_catalog, workers


@dataclass(frozen=True, slots=True)
class CatalogVersion:
    worker_id: str
    catalog_hash: str


async def upsert_heartbeat(
    conn: AsyncConnection,
    *,
    worker_id: str,
    at: datetime,
    current_job_id: str | None,
    info: dict[str, Any],
) -> None:
    """Record a heartbeat; an older one arriving late never moves time back."""
    statement = pg_insert(workers).values(
        worker_id=worker_id, last_heartbeat=at, current_job_id=current_job_id, info=info
    )
    await conn.execute(
        statement.on_conflict_do_update(
            index_elements=[workers.c.worker_id],
            set_={
                "last_heartbeat": statement.excluded.last_heartbeat,
                "current_job_id": statement.excluded.current_job_id,
                "info": statement.excluded.info,
            },
            where=workers.c.last_heartbeat <= statement.excluded.last_heartbeat,
        )
    )


async def upsert_catalog(
    conn: AsyncConnection,
    *,
    worker_id: str,
    catalog_hash: str,
    object_info: dict[str, Any],
    at: datetime,
) -> None:
    statement = pg_insert(node_catalog).values(
        worker_id=worker_id,
        catalog_hash=catalog_hash,
        object_info=object_info,
        updated_at=at,
    )
    await conn.execute(
        statement.on_conflict_do_update(
            index_elements=[node_catalog.c.worker_id],
            set_={
                "catalog_hash": statement.excluded.catalog_hash,
                "object_info": statement.excluded.object_info,
                "updated_at": statement.excluded.updated_at,
            },
            where=node_catalog.c.updated_at <= statement.excluded.updated_at,
        )
    )


async def catalog_versions(conn: AsyncConnection) -> frozenset[CatalogVersion]:
    query = select(node_catalog.c.worker_id, node_catalog.c.catalog_hash)
    return frozenset(
        CatalogVersion(row.worker_id, row.catalog_hash)
        for row in await conn.execute(query)
    )


async def object_infos(conn: AsyncConnection) -> list[dict[str, Any]]:
    query = select(node_catalog.c.object_info).order_by(node_catalog.c.worker_id)
    return [row.object_info for row in await conn.execute(query)]
