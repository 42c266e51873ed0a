"""Entry point: `serve` (the default, migrating first) or `migrate`."""

from __future__ import annotations

from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor
from opentelemetry.instrumentation.urllib3 import URLLib3Instrumentor

from comfyserve.runtime.entrypoint import serve_or_migrate
from comfyserve.runtime.migrations import upgrade_async
from comfyserve.storage.app import running
from comfyserve.storage.db import MIGRATIONS
from comfyserve.storage.settings import Settings


async def migrate_only(settings: Settings) -> str:
    await upgrade_async(
        MIGRATIONS, url=settings.database_url, schema=settings.schema_name
    )
    return settings.schema_name


def main() -> None:
    serve_or_migrate(
        "storage",
        Settings,
        running=running,
        migrate=migrate_only,
        migrate_before_running=False,
        # urllib3 carries the S3 calls (minio).
        instrumentors=[SQLAlchemyInstrumentor(), URLLib3Instrumentor()],
    )


if __name__ == "__main__":
    main()
