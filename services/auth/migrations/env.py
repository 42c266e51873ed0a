"""Alembic environment: async (asyncpg), version table inside the service's schema.

`comfyserve.auth.migrate` passes the URL and schema as config attributes;
run by the `alembic` command they come from `AUTH_*` settings.
"""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy import Connection, text
from sqlalchemy.ext.asyncio import create_async_engine

from comfyserve.auth.settings import Settings

# Any constant works: it only serialises migrations of concurrent instances.
_MIGRATION_LOCK = 0x61757468


def _target() -> tuple[str, str]:
    attributes = context.config.attributes
    if "url" in attributes and "schema" in attributes:
        return attributes["url"], attributes["schema"]
    settings = Settings()
    return settings.sqlalchemy_url, settings.schema_


def _run(connection: Connection, schema: str) -> None:
    context.configure(
        connection=connection,
        version_table_schema=schema,
        transaction_per_migration=False,
    )
    with context.begin_transaction():
        context.run_migrations(schema=schema)


async def _migrate() -> None:
    url, schema = _target()
    engine = create_async_engine(url)
    try:
        async with engine.connect() as connection:
            await connection.execute(
                text("SELECT pg_advisory_lock(:key)"), {"key": _MIGRATION_LOCK}
            )
            try:
                await connection.execute(
                    text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
                )
                await connection.execute(text(f'SET search_path TO "{schema}"'))
                await connection.commit()
                await connection.run_sync(_run, schema)
                await connection.commit()
            finally:
                await connection.execute(
                    text("SELECT pg_advisory_unlock(:key)"), {"key": _MIGRATION_LOCK}
                )
                await connection.commit()
    finally:
        await engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline migrations are not supported")
asyncio.run(_migrate())
