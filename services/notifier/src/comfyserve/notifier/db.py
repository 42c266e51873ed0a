"""The database engine and migrations, both bound to the service's schema."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from comfyserve.notifier.settings import Settings
from comfyserve.runtime.database import create_engine as schema_engine
from comfyserve.runtime.migrations import alembic_config

# services/notifier/migrations, next to src/ (the package is installed editable).
MIGRATIONS = Path(__file__).resolve().parents[3] / "migrations"


def create_engine(settings: Settings) -> AsyncEngine:
    return schema_engine(settings.database_url, settings.schema_name)


async def migrate(engine: AsyncEngine, settings: Settings) -> None:
    """Brings the schema to the latest revision in one transaction."""

    def upgrade(connection: Connection) -> None:
        config = alembic_config(
            MIGRATIONS, schema=settings.schema_name, connection=connection
        )
        command.upgrade(config, "head")

    async with engine.begin() as connection:
        await connection.run_sync(upgrade)
