"""`run_env` and `upgrade` against the local Postgres, over a one-revision
migrations folder written for each test."""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from comfyserve.runtime.database import sqlalchemy_url
from comfyserve.runtime.migrations import (
    alembic_config,
    upgrade_async,
    upgrade_engine,
)

pytestmark = pytest.mark.integration

LOCK = "comfyserve.runtime.tests.migrations"
ENV = f"""
import os

from comfyserve.runtime.migrations import Target, run_env


def _settings() -> Target:
    return Target(
        url=os.environ["RUNTIME_TEST_DATABASE_URL"],
        schema=os.environ["RUNTIME_TEST_SCHEMA"],
    )


run_env(lock={LOCK!r}, settings=_settings)
"""

REVISION = """
import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade(schema: str) -> None:
    op.create_table(
        "things", sa.Column("id", sa.Integer, primary_key=True), schema=schema
    )
    op.execute("CREATE TABLE unqualified (id integer)")
"""


@pytest.fixture
def migrations(tmp_path: Path) -> Path:
    (tmp_path / "versions").mkdir()
    (tmp_path / "env.py").write_text(ENV)
    (tmp_path / "versions" / "0001_things.py").write_text(REVISION)
    return tmp_path


@pytest.fixture
def schema() -> str:
    return f"runtime_test_{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def engine(stack: dict[str, str], schema: str) -> AsyncIterator[AsyncEngine]:
    engine = create_async_engine(sqlalchemy_url(stack["DATABASE_URL"]))
    try:
        yield engine
    finally:
        async with engine.begin() as connection:
            await connection.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        await engine.dispose()


async def tables(engine: AsyncEngine, schema: str) -> set[str]:
    async with engine.connect() as connection:
        rows = await connection.execute(
            text(
                "SELECT table_name FROM information_schema.tables"
                " WHERE table_schema = :schema"
            ),
            {"schema": schema},
        )
        return {row.table_name for row in rows}


async def versions(engine: AsyncEngine, schema: str) -> list[str]:
    async with engine.connect() as connection:
        rows = await connection.execute(
            text(f'SELECT version_num FROM "{schema}".alembic_version')
        )
        return [row.version_num for row in rows]


async def test_a_fresh_schema_gets_its_tables_and_its_version_table(
    migrations: Path, schema: str, engine: AsyncEngine, stack: dict[str, str]
) -> None:
    await upgrade_async(migrations, url=stack["DATABASE_URL"], schema=schema)

    # What a revision leaves unqualified lands in the schema too.
    assert await tables(engine, schema) == {"alembic_version", "things", "unqualified"}
    assert await versions(engine, schema) == ["0001"]


async def test_upgrading_twice_changes_nothing(
    migrations: Path, schema: str, engine: AsyncEngine, stack: dict[str, str]
) -> None:
    await upgrade_async(migrations, url=stack["DATABASE_URL"], schema=schema)
    await upgrade_async(migrations, url=stack["DATABASE_URL"], schema=schema)

    assert await versions(engine, schema) == ["0001"]


async def instance_migrating(migrations: Path, url: str, schema: str) -> int:
    """The exit status of a process of its own that upgrades, as a starting
    instance does (Alembic's context is one per process)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "import sys, pathlib\n"
        "from comfyserve.runtime.migrations import upgrade\n"
        "upgrade(pathlib.Path(sys.argv[1]), url=sys.argv[2], schema=sys.argv[3])",
        str(migrations),
        url,
        schema,
    )
    return await process.wait()


async def waiting_for_lock(engine: AsyncEngine, count: int) -> None:
    """Returns once `count` sessions wait for the migrations' lock."""
    query = text(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
        " AND objid = (hashtext(:name)::bigint & 4294967295)::oid"
    )
    async with asyncio.timeout(60):
        while True:
            async with engine.connect() as connection:
                waiting = await connection.scalar(query, {"name": LOCK})
            if waiting == count:
                return
            await asyncio.sleep(0.1)


@pytest.mark.slow
async def test_instances_starting_at_once_migrate_one_at_a_time(
    migrations: Path, schema: str, engine: AsyncEngine, stack: dict[str, str]
) -> None:
    async with engine.connect() as holder:
        # As a first instance would: held while the others start.
        await holder.execute(
            text("SELECT pg_advisory_lock(hashtext(:name))"), {"name": LOCK}
        )
        instances = [
            asyncio.create_task(
                instance_migrating(migrations, stack["DATABASE_URL"], schema)
            )
            for _ in range(2)
        ]
        await waiting_for_lock(engine, 2)
        # Neither has touched the schema while the lock was held.
        assert await tables(engine, schema) == set()
        await holder.execute(
            text("SELECT pg_advisory_unlock(hashtext(:name))"), {"name": LOCK}
        )
        await holder.commit()

    assert await asyncio.gather(*instances) == [0, 0]
    assert await versions(engine, schema) == ["0001"]


async def test_a_callers_connection_migrates_inside_its_transaction(
    migrations: Path, schema: str, engine: AsyncEngine
) -> None:
    def upgrade(connection) -> None:
        config = alembic_config(migrations, schema=schema, connection=connection)
        command.upgrade(config, "head")

    async with engine.connect() as connection:
        transaction = await connection.begin()
        await connection.run_sync(upgrade)
        assert (
            await connection.execute(text(f'SELECT count(*) FROM "{schema}".things'))
        ).scalar() == 0
        await transaction.rollback()

    assert await tables(engine, schema) == set()


async def test_a_services_engine_migrates_once_and_again_as_a_no_op(
    migrations: Path, schema: str, engine: AsyncEngine
) -> None:
    await upgrade_engine(engine, migrations, schema=schema)
    await upgrade_engine(engine, migrations, schema=schema)

    assert await versions(engine, schema) == ["0001"]
    assert "things" in await tables(engine, schema)


async def test_run_by_hand_it_reads_the_services_settings(
    migrations: Path,
    schema: str,
    engine: AsyncEngine,
    stack: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RUNTIME_TEST_DATABASE_URL", stack["DATABASE_URL"])
    monkeypatch.setenv("RUNTIME_TEST_SCHEMA", schema)
    config = Config()
    config.set_main_option("script_location", str(migrations))

    await asyncio.to_thread(command.upgrade, config, "head")

    assert await versions(engine, schema) == ["0001"]


async def test_a_schema_name_that_is_not_an_identifier_is_refused(
    migrations: Path, stack: dict[str, str]
) -> None:
    with pytest.raises(ValueError, match="SQL identifier"):
        await upgrade_async(
            migrations, url=stack["DATABASE_URL"], schema='things"; DROP'
        )


def test_offline_migrations_are_refused(migrations: Path) -> None:
    config = alembic_config(migrations, schema="unused", url="postgresql://x/y")
    with pytest.raises(SystemExit, match="offline"):
        command.upgrade(config, "head", sql=True)
