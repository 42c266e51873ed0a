"""Database engine and the Core metadata every repository queries.

Tables are declared without a schema: every connection's `search_path` is the
service's schema, so the same statements serve any `AUTH_SCHEMA`.
"""

from __future__ import annotations

from typing import Any, TypeAlias

from sqlalchemy import MetaData, Row, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from comfyserve.auth.settings import Settings

metadata = MetaData()

# A result row of any shape, as the repositories read them by column name.
AnyRow: TypeAlias = Row[*tuple[Any, ...]]


def create_engine(settings: Settings) -> AsyncEngine:
    return create_async_engine(
        settings.sqlalchemy_url,
        pool_size=10,
        max_overflow=10,
        pool_pre_ping=True,
        # Bound parameters carry password hashes and key digests: never into
        # an error or a log.
        hide_parameters=True,
        connect_args={"server_settings": {"search_path": settings.schema_}},
    )


async def lock(conn: AsyncConnection, key: int) -> None:
    """Serialise a transaction with every other one taking `key` (held until
    it ends), e.g. two instances creating the first signing key at once."""
    await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})
