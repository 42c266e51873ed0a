"""Entry point: `serve` (the default, migrating first) or `migrate`."""

from __future__ import annotations

from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor

from comfyserve.notifier.app import running
from comfyserve.notifier.db import MIGRATIONS
from comfyserve.notifier.settings import Settings
from comfyserve.runtime.entrypoint import serve_or_migrate
from comfyserve.runtime.migrations import upgrade_async


async def migrate_only(settings: Settings) -> str:
    await upgrade_async(
        MIGRATIONS, url=settings.database_url, schema=settings.schema_name
    )
    return settings.schema_name


def main() -> None:
    serve_or_migrate(
        "notifier",
        Settings,
        running=running,
        migrate=migrate_only,
        migrate_before_running=False,
        instrumentors=[SQLAlchemyInstrumentor()],
    )


if __name__ == "__main__":
    main()
