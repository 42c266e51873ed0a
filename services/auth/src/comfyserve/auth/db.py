"""The Core metadata every repository queries, and the service's own locks.

Tables are declared without a schema: the engine
(`comfyserve.runtime.database`) sets every connection's `search_path` to the
service's schema, so the same statements serve any `AUTH_SCHEMA`.
"""

from __future__ import annotations

from typing import Any, TypeAlias

from sqlalchemy import MetaData, Row, text
from sqlalchemy.ext.asyncio import AsyncConnection

metadata = MetaData()

# A result row of any shape, as the repositories read them by column name.
AnyRow: TypeAlias = Row[*tuple[Any, ...]]


async def lock(conn: AsyncConnection, key: int) -> None:
    """Serialise a transaction with every other one taking `key` (held until
    it ends), e.g. two instances creating the first signing key at once."""
    await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})
