"""The database engine and migrations, both bound to the service's schema."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from comfyserve.runtime.database import create_engine as schema_engine
from comfyserve.runtime.migrations import upgrade_engine
from comfyserve.storage.settings import Settings

# services/storage/migrations, next to src/ (the package is installed editable).
MIGRATIONS = Path(__file__).resolve().parents[3] / "migrations"


def create_engine(settings: Settings) -> AsyncEngine:
    return schema_engine(settings.database_url, settings.schema_name)


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


async def migrate(engine: AsyncEngine, settings: Settings) -> None:
    """Brings the schema to the latest revision over one of the engine's
    connections, in one transaction (`comfyserve.runtime.migrations`)."""
    await upgrade_engine(engine, MIGRATIONS, schema=settings.schema_name)
