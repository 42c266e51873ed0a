"""Apply the Alembic migrations in `services/workflow/migrations`
(`comfyserve.runtime.migrations`)."""

from __future__ import annotations

from pathlib import Path

from comfyserve.runtime import migrations
from comfyserve.workflow.settings import Settings

# src/comfyserve/workflow/migrate.py -> services/workflow/migrations
MIGRATIONS = Path(__file__).resolve().parents[3] / "migrations"


async def upgrade_async(settings: Settings) -> None:
    await migrations.upgrade_async(
        MIGRATIONS, url=settings.database_url, schema=settings.schema_
    )
