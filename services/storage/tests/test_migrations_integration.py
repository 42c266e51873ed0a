"""The migrations on a fresh schema and again over it; 0002 over a schema that
already holds 0001's rows, and back."""

import uuid

import pytest
from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import text

from comfyserve.runtime.migrations import alembic_config
from comfyserve.storage.db import MIGRATIONS, create_engine, migrate

pytestmark = pytest.mark.integration

COLUMNS = (
    "id, tenant_id, purpose, filename, content_type, size, bucket, key, job_id, "
    'node_id, "index", state, created_at'
)
VALUES = (
    ":id, 't1', 'output', 'out.png', 'image/png', 3, 'b', :key, 'job1', '9', 0, "
    "'ready', now()"
)


def insert_output(schema: str, *, with_attempt: bool) -> str:
    """An output row of job1's slot (9, 0), as 0001 or as 0002 writes it."""
    if not with_attempt:
        return f'INSERT INTO "{schema}".files ({COLUMNS}) VALUES ({VALUES})'
    return (
        f'INSERT INTO "{schema}".files ({COLUMNS}, attempt) VALUES ({VALUES}, :attempt)'
    )


async def alembic(settings, engine, action: str, revision: str) -> None:
    def run(connection) -> None:
        config = alembic_config(
            MIGRATIONS, schema=settings.schema_name, connection=connection
        )
        getattr(command, action)(config, revision)

    async with engine.begin() as connection:
        await connection.run_sync(run)


async def rows(engine, sql: str) -> list[tuple]:
    async with engine.connect() as connection:
        return [tuple(row) for row in await connection.execute(text(sql))]


@pytest.fixture
async def schema(settings_for):
    settings = settings_for(f"storage_test_{uuid.uuid4().hex[:12]}")
    engine = create_engine(settings)
    try:
        yield settings, engine
    finally:
        async with engine.begin() as connection:
            await connection.execute(
                text(f'DROP SCHEMA IF EXISTS "{settings.schema_name}" CASCADE')
            )
        await engine.dispose()


async def test_outputs_stored_before_attempts_become_attempt_one(schema) -> None:
    settings, engine = schema
    name = settings.schema_name
    await alembic(settings, engine, "upgrade", "0001")
    async with engine.begin() as connection:
        await connection.execute(
            text(insert_output(name, with_attempt=False)),
            {"id": uuid.uuid4(), "key": "outputs/t1/job1/9/0-out.png"},
        )

    await alembic(settings, engine, "upgrade", "head")

    assert await rows(engine, f'SELECT attempt, key FROM "{name}".files') == [
        (1, "outputs/t1/job1/9/0-out.png")
    ]
    # The same slot under another attempt is a row of its own now.
    async with engine.begin() as connection:
        await connection.execute(
            text(insert_output(name, with_attempt=True)),
            {"id": uuid.uuid4(), "key": "outputs/t1/job1/2/9/0-out.png", "attempt": 2},
        )
    assert len(await rows(engine, f'SELECT id FROM "{name}".files')) == 2


async def test_the_migration_downgrades_to_one_row_per_slot(schema) -> None:
    settings, engine = schema
    name = settings.schema_name
    await alembic(settings, engine, "upgrade", "head")
    async with engine.begin() as connection:
        for attempt in (1, 2):
            await connection.execute(
                text(insert_output(name, with_attempt=True)),
                {"id": uuid.uuid4(), "key": f"k{attempt}", "attempt": attempt},
            )

    await alembic(settings, engine, "downgrade", "0001")

    assert await rows(engine, f'SELECT key FROM "{name}".files') == [("k2",)]
    assert await rows(engine, f"SELECT to_regclass('{name}.job_fences')") == [(None,)]


async def test_a_fresh_schema_migrates_to_head_and_again_changes_nothing(
    schema,
) -> None:
    settings, engine = schema
    name = settings.schema_name
    await migrate(engine, settings)
    tables = (
        "SELECT table_name FROM information_schema.tables"
        f" WHERE table_schema = '{name}' ORDER BY table_name"
    )
    migrated = await rows(engine, tables)
    await migrate(engine, settings)

    assert await rows(engine, tables) == migrated
    assert ("alembic_version",) in migrated
    head = ScriptDirectory(str(MIGRATIONS)).get_current_head()
    assert await rows(engine, f'SELECT version_num FROM "{name}".alembic_version') == [
        (head,)
    ]
