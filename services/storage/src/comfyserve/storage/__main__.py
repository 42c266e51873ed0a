"""Entry point: `serve` (the default, migrating first) or `migrate`."""

from __future__ import annotations

import argparse
import asyncio

import structlog
from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor
from opentelemetry.instrumentation.urllib3 import URLLib3Instrumentor

from comfyserve.runtime.logging import configure_logging
from comfyserve.runtime.tasks import stop_requested
from comfyserve.runtime.telemetry import configure_tracing
from comfyserve.storage.app import running
from comfyserve.storage.db import create_engine, migrate
from comfyserve.storage.settings import Settings

log = structlog.get_logger("comfyserve.storage")


async def serve(settings: Settings) -> None:
    stop = stop_requested()
    async with running(settings):
        await stop.wait()
        log.info("storage.stopping")
    log.info("storage.stopped")


async def migrate_only(settings: Settings) -> None:
    engine = create_engine(settings)
    try:
        await migrate(engine, settings)
    finally:
        await engine.dispose()
    log.info("storage.migrated", schema=settings.schema_name)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m comfyserve.storage")
    parser.add_argument(
        "command", nargs="?", choices=["serve", "migrate"], default="serve"
    )
    command = parser.parse_args().command
    settings = Settings()
    configure_logging(settings.log_level)
    if command == "serve":
        # urllib3 carries the S3 calls (minio).
        configure_tracing("storage", [SQLAlchemyInstrumentor(), URLLib3Instrumentor()])
    asyncio.run(serve(settings) if command == "serve" else migrate_only(settings))


if __name__ == "__main__":
    main()
