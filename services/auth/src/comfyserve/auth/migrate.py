"""Apply the Alembic migrations in `services/auth/migrations`
(`comfyserve.runtime.migrations`)."""

from __future__ import annotations

from pathlib import Path

from comfyserve.auth.settings import Settings
from comfyserve.runtime import migrations

# src/comfyserve/auth/migrate.py -> services/auth/migrations
MIGRATIONS = Path(__file__).resolve().parents[3] / "migrations"


async def upgrade_async(settings: Settings) -> None:
    await migrations.upgrade_async(
        MIGRATIONS, url=settings.database_url, schema=settings.schema_
    )
