"""The fleet's node catalog as one ComfyUI `/object_info` document. Reads the
pools' catalogs (the workers feature's table) and never writes."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from comfyserve.workflow.workers.models import pool_catalogs


async def fleet_object_info(
    conn: AsyncConnection, class_type: str | None
) -> dict[str, Any]:
    """Every pool's node classes in one document, the first pool by name
    winning a class two pools define; only `class_type` when given (read in
    SQL, so one class never costs the whole documents)."""
    document = (
        pool_catalogs.c.object_info
        if class_type is None
        else pool_catalogs.c.object_info[class_type]
    )
    query = select(document.label("document")).order_by(pool_catalogs.c.pool)
    merged: dict[str, Any] = {}
    for row in await conn.execute(query):
        if row.document is None:
            continue
        if class_type is not None:
            merged.setdefault(class_type, row.document)
            continue
        for name, definition in row.document.items():
            merged.setdefault(name, definition)
    return merged
