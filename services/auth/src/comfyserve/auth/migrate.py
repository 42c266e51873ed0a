"""Apply the Alembic migrations in `services/auth/migrations`."""

from __future__ import annotations

import asyncio
from pathlib import Path

from alembic import command
from alembic.config import Config

from comfyserve.auth.settings import Settings

# src/comfyserve/auth/migrate.py -> services/auth/migrations
MIGRATIONS = Path(__file__).resolve().parents[3] / "migrations"


def alembic_config(settings: Settings) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["url"] = settings.sqlalchemy_url
    config.attributes["schema"] = settings.schema_
    return config


def upgrade(settings: Settings) -> None:
    """Blocking: runs its own event loop, so call it off the running loop."""
    command.upgrade(alembic_config(settings), "head")


async def upgrade_async(settings: Settings) -> None:
    await asyncio.to_thread(upgrade, settings)
