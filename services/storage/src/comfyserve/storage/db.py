"""The database engine and migrations, both bound to the service's schema."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy.ext.asyncio as sa_asyncio
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from comfyserve.runtime.migrations import upgrade_engine
from comfyserve.storage.settings import Settings

# services/storage/migrations, next to src/ (the package is installed editable).
MIGRATIONS = Path(__file__).resolve().parents[3] / "migrations"


def create_engine(settings: Settings) -> AsyncEngine:
    # Tables are declared without a schema; every statement is pointed at ours.
    # SQLAlchemy then never renders bound values (file names, tenant ids) into
    # the errors it raises, which end up in logged tracebacks. Looked up at
    # call time, so the SQLAlchemy instrumentation installed at start sees it.
    return sa_asyncio.create_async_engine(
        settings.async_database_url, pool_pre_ping=True, hide_parameters=True
    ).execution_options(schema_translate_map={None: settings.schema_name})


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


async def migrate(engine: AsyncEngine, settings: Settings) -> None:
    """Brings the schema to the latest revision over one of the engine's
    connections, in one transaction (`comfyserve.runtime.migrations`)."""
    await upgrade_engine(engine, MIGRATIONS, schema=settings.schema_name)
