"""`python -m comfyserve.workflow [serve|migrate]`."""

from __future__ import annotations

import argparse
import asyncio

import structlog
from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor

from comfyserve.runtime.logging import configure_logging
from comfyserve.runtime.tasks import stop_requested
from comfyserve.runtime.telemetry import configure_tracing
from comfyserve.workflow.app import run_app
from comfyserve.workflow.migrate import upgrade_async
from comfyserve.workflow.settings import Settings

log = structlog.get_logger(__name__)


async def serve(settings: Settings) -> None:
    await upgrade_async(settings)
    stop = stop_requested()
    async with run_app(settings):
        await stop.wait()
    log.info("workflow.stopped")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m comfyserve.workflow")
    parser.add_argument(
        "command", nargs="?", default="serve", choices=["serve", "migrate"]
    )
    args = parser.parse_args()
    settings = Settings()
    configure_logging(settings.log_level)
    if args.command == "migrate":
        asyncio.run(upgrade_async(settings))
        log.info("workflow.migrated", schema=settings.schema_)
        return
    configure_tracing("workflow", [SQLAlchemyInstrumentor()])
    asyncio.run(serve(settings))


if __name__ == "__main__":
    main()
