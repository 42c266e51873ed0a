"""Alembic environment: migrations run in the service's own schema, one at a time."""

from __future__ import annotations

import asyncio
import os

from alembic import context
from sqlalchemy import Connection, text
from sqlalchemy.ext.asyncio import create_async_engine

config = context.config
# Serialises migrations when several instances start at once.
MIGRATION_LOCK = "comfyserve.storage.migrations"


def schema_name() -> str:
    schema = config.attributes.get("schema") or os.environ.get(
        "STORAGE_SCHEMA", "storage"
    )
    config.attributes["schema"] = schema
    return str(schema)


def run(connection: Connection) -> None:
    schema = schema_name()
    connection.execute(
        text("SELECT pg_advisory_xact_lock(hashtext(:name))"),
        {"name": MIGRATION_LOCK},
    )
    connection.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
    context.configure(
        connection=connection,
        version_table_schema=schema,
        transaction_per_migration=False,
    )
    with context.begin_transaction():
        context.run_migrations()


async def run_online() -> None:
    url = config.attributes.get("url") or os.environ["STORAGE_DATABASE_URL"]
    engine = create_async_engine(
        str(url).replace("postgresql://", "postgresql+asyncpg://", 1),
        hide_parameters=True,
    )
    try:
        async with engine.begin() as connection:
            await connection.run_sync(run)
    finally:
        await engine.dispose()


shared = config.attributes.get("connection")
if shared is not None:
    run(shared)
else:
    asyncio.run(run_online())
