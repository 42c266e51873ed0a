"""Entry point: `serve` (the default, migrating first) or `migrate`."""

from __future__ import annotations

import argparse
import asyncio

import structlog
from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor

from comfyserve.notifier.app import running
from comfyserve.notifier.db import create_engine, migrate
from comfyserve.notifier.settings import Settings
from comfyserve.runtime.logging import configure_logging
from comfyserve.runtime.tasks import stop_requested
from comfyserve.runtime.telemetry import configure_tracing

log = structlog.get_logger("comfyserve.notifier")


async def serve(settings: Settings) -> None:
    stop = stop_requested()
    async with running(settings):
        await stop.wait()
        log.info("notifier.stopping")
    log.info("notifier.stopped")


async def migrate_only(settings: Settings) -> None:
    engine = create_engine(settings)
    try:
        await migrate(engine, settings)
    finally:
        await engine.dispose()
    log.info("notifier.migrated", schema=settings.schema_name)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m comfyserve.notifier")
    parser.add_argument(
        "command", nargs="?", choices=["serve", "migrate"], default="serve"
    )
    command = parser.parse_args().command
    settings = Settings()
    configure_logging(settings.log_level)
    if command == "serve":
        configure_tracing("notifier", [SQLAlchemyInstrumentor()])
    asyncio.run(serve(settings) if command == "serve" else migrate_only(settings))


if __name__ == "__main__":
    main()
