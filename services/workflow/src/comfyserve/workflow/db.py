"""Database engine and the Core metadata every repository queries.

Tables are declared without a schema: every connection's `search_path` is the
service's schema, so the same statements serve any `WORKFLOW_SCHEMA`.
"""

from __future__ import annotations

from sqlalchemy import MetaData, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from comfyserve.workflow.settings import Settings

metadata = MetaData()

OUTBOX_CHANNEL = "workflow_outbox"
JOBS_CHANNEL = "workflow_jobs"


def create_engine(settings: Settings) -> AsyncEngine:
    return create_async_engine(
        settings.sqlalchemy_url,
        pool_size=10,
        max_overflow=10,
        pool_pre_ping=True,
        connect_args={"server_settings": {"search_path": settings.schema_}},
    )


async def notify(conn: AsyncConnection, channel: str, payload: str = "") -> None:
    """Queue a notification; Postgres delivers it when the transaction commits."""
    await conn.execute(
        text("SELECT pg_notify(:channel, :payload)"),
        {"channel": channel, "payload": payload},
    )
