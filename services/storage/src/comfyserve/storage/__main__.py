"""Entry point: `serve` (the default, migrating first) or `migrate`."""

from __future__ import annotations

from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor
from opentelemetry.instrumentation.urllib3 import URLLib3Instrumentor

from comfyserve.runtime.entrypoint import serve_or_migrate
from comfyserve.storage.app import running
from comfyserve.storage.db import create_engine, migrate
from comfyserve.storage.settings import Settings


async def migrate_only(settings: Settings) -> str:
    engine = create_engine(settings)
    try:
        await migrate(engine, settings)
    finally:
        await engine.dispose()
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
