"""The migrations on a fresh schema, down to 0001 and up again: each revision
applies over the one before, and its downgrade leaves that one's tables."""

import uuid
from collections.abc import AsyncIterator

import pytest
from alembic import command
from sqlalchemy import Connection, text
from sqlalchemy.ext.asyncio import AsyncEngine

from comfyserve.notifier.db import MIGRATIONS, create_engine, migrate
from comfyserve.notifier.settings import Settings
from comfyserve.runtime.migrations import alembic_config

from .conftest import drop_schema, notifier_settings

pytestmark = pytest.mark.integration


@pytest.fixture
async def schema(stack: dict[str, str]) -> AsyncIterator[tuple[Settings, AsyncEngine]]:
    settings = notifier_settings(stack, f"notifier_test_{uuid.uuid4().hex[:12]}")
    engine = create_engine(settings)
    try:
        yield settings, engine
    finally:
        await engine.dispose()
        await drop_schema(settings)


async def alembic(
    settings: Settings, engine: AsyncEngine, action: str, revision: str
) -> None:
    def run(connection: Connection) -> None:
        config = alembic_config(
            MIGRATIONS, schema=settings.schema_name, connection=connection
        )
        getattr(command, action)(config, revision)

    async with engine.begin() as connection:
        await connection.run_sync(run)


async def delivery_columns(settings: Settings, engine: AsyncEngine) -> set[str]:
    async with engine.connect() as connection:
        found = await connection.execute(
            text(
                "SELECT column_name FROM information_schema.columns"
                " WHERE table_schema = :schema AND table_name = 'deliveries'"
            ),
            {"schema": settings.schema_name},
        )
        return {row[0] for row in found}


async def triggers(settings: Settings, engine: AsyncEngine) -> set[str]:
    async with engine.connect() as connection:
        found = await connection.execute(
            text(
                "SELECT trigger_name FROM information_schema.triggers"
                " WHERE trigger_schema = :schema"
            ),
            {"schema": settings.schema_name},
        )
        return {row[0] for row in found}


async def test_migrations_go_up_down_to_the_first_and_up_again(
    schema: tuple[Settings, AsyncEngine],
) -> None:
    settings, engine = schema
    await migrate(engine, settings)
    assert "traceparent" in await delivery_columns(settings, engine)
    assert await triggers(settings, engine) == {"endpoint_changed"}

    await alembic(settings, engine, "downgrade", "0001")
    columns = await delivery_columns(settings, engine)
    assert "traceparent" not in columns
    assert "next_attempt_at" in columns
    assert await triggers(settings, engine) == set()

    await migrate(engine, settings)
    assert "traceparent" in await delivery_columns(settings, engine)
    assert await triggers(settings, engine) == {"endpoint_changed"}
    # Applied twice over: nothing left to do.
    await migrate(engine, settings)
