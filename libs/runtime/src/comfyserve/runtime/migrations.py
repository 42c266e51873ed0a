"""Alembic migrations of a service's own Postgres schema: `run_env`, the whole
body of every service's `migrations/env.py`, and `upgrade` (over a URL) or
`upgrade_engine` (over a service's engine), which apply them.

What every service gets from it:
- instances starting at once migrate one at a time: each takes an advisory
  lock named after its service, held until its migration transaction ends;
- the schema is created when missing, and Alembic's version table lives in it,
  so several deployments (and test sessions) share one database;
- all of a run's revisions apply in one transaction: a failed run leaves
  nothing behind, not even the schema;
- each revision's `upgrade(schema)` and `downgrade(schema)` are given the
  schema, and `search_path` is set to it for whatever they leave unqualified.

SQLAlchemy, asyncpg and Alembic come with the `database` extra
(`comfyserve-runtime[database]`) rather than with the runtime itself: the
gateway and the executor own no schema, and their images should not carry a
database stack they never open.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from alembic import command, context
from alembic.config import Config
from sqlalchemy import Connection, text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from comfyserve.runtime.database import plain_identifier, sqlalchemy_url

__all__ = [
    "Target",
    "alembic_config",
    "run_env",
    "upgrade",
    "upgrade_async",
    "upgrade_engine",
]


@dataclass(frozen=True, slots=True)
class Target:
    """Where migrations run: a database URL (any `postgresql://` form) and the
    service's schema."""

    url: str
    schema: str


def alembic_config(
    migrations: Path,
    *,
    schema: str,
    url: str | None = None,
    connection: Connection | None = None,
) -> Config:
    """A config for `alembic.command` over the scripts in `migrations`.

    With `connection`, `run_env` migrates over it inside the caller's
    transaction, and the caller commits (or rolls back); `url` is then unused.
    """
    config = Config()
    config.set_main_option("script_location", str(migrations))
    config.attributes["schema"] = schema
    if url is not None:
        config.attributes["url"] = url
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def upgrade(migrations: Path, *, url: str, schema: str) -> None:
    """Blocking, and runs an event loop of its own: call it off the running
    loop (`upgrade_async`)."""
    command.upgrade(alembic_config(migrations, schema=schema, url=url), "head")


async def upgrade_async(migrations: Path, *, url: str, schema: str) -> None:
    await asyncio.to_thread(upgrade, migrations, url=url, schema=schema)


async def upgrade_engine(engine: AsyncEngine, migrations: Path, *, schema: str) -> None:
    """Applies `migrations` over one of `engine`'s connections, in one
    transaction: a service migrating at start uses the engine it serves with
    (its pool, its instrumentation) instead of one of its own."""

    def upgrade_over(connection: Connection) -> None:
        config = alembic_config(migrations, schema=schema, connection=connection)
        command.upgrade(config, "head")

    async with engine.begin() as connection:
        await connection.run_sync(upgrade_over)


def run_env(*, lock: str, settings: Callable[[], Target]) -> None:
    """Runs the migrations Alembic asked for; a service's `env.py` calls it.

    `lock` names the service's advisory lock. The URL and schema are those
    `alembic_config` put in the config; `settings` is asked only when they are
    missing, so the `alembic` command run by hand reads the service's own
    settings.
    """
    if context.is_offline_mode():
        raise SystemExit("offline migrations are not supported")
    attributes = context.config.attributes
    connection = attributes.get("connection")
    if connection is not None:
        schema = attributes.get("schema") or settings().schema
        _migrate(connection, lock, plain_identifier(schema))
        return
    if "url" in attributes and "schema" in attributes:
        target = Target(url=attributes["url"], schema=attributes["schema"])
    else:
        target = settings()
    asyncio.run(_migrate_online(target, lock))


async def _migrate_online(target: Target, lock: str) -> None:
    schema = plain_identifier(target.schema)
    engine = create_async_engine(sqlalchemy_url(target.url), hide_parameters=True)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(_migrate, lock, schema)
    finally:
        await engine.dispose()


def _migrate(connection: Connection, lock: str, schema: str) -> None:
    # A transaction's lock: released by the commit or rollback that ends the
    # run, however the run ends.
    connection.execute(
        text("SELECT pg_advisory_xact_lock(hashtext(:name))"), {"name": lock}
    )
    connection.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
    connection.execute(text(f'SET LOCAL search_path TO "{schema}"'))
    # The connection is in a transaction already, so Alembic neither begins
    # nor commits one: the lock, the schema and every revision commit together.
    context.configure(
        connection=connection,
        version_table_schema=schema,
        transaction_per_migration=False,
    )
    with context.begin_transaction():
        context.run_migrations(schema=schema)
