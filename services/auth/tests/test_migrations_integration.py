"""The auth service's migrations on a fresh schema, and run again over it."""

import uuid

import asyncpg
import pytest
from alembic.script import ScriptDirectory

from comfyserve.auth.migrate import MIGRATIONS, upgrade_async

pytestmark = pytest.mark.integration


async def tables(connection: asyncpg.Connection, schema: str) -> set[str]:
    rows = await connection.fetch(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = $1",
        schema,
    )
    return {row["table_name"] for row in rows}


async def test_a_fresh_schema_migrates_to_head_and_again_changes_nothing(
    settings,
) -> None:
    schema = f"auth_test_{uuid.uuid4().hex[:12]}"
    fresh = settings.model_copy(update={"schema_": schema})
    connection = await asyncpg.connect(fresh.asyncpg_dsn)
    try:
        await upgrade_async(fresh)
        migrated = await tables(connection, schema)
        await upgrade_async(fresh)

        assert await tables(connection, schema) == migrated
        assert "alembic_version" in migrated
        versions = await connection.fetch(
            f'SELECT version_num FROM "{schema}".alembic_version'
        )
        head = ScriptDirectory(str(MIGRATIONS)).get_current_head()
        assert [row["version_num"] for row in versions] == [head]
    finally:
        await connection.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await connection.close()
