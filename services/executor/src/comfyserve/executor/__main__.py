"""`python -m comfyserve.executor`: serve until SIGTERM or SIGINT."""

from __future__ import annotations

import asyncio
import sys

import structlog
from opentelemetry.instrumentation.aiohttp_client import AioHttpClientInstrumentor
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from pydantic import ValidationError

from comfyserve.executor.app import ExecutorApp
from comfyserve.executor.settings import Settings
from comfyserve.runtime.logging import configure_logging
from comfyserve.runtime.tasks import stop_requested
from comfyserve.runtime.telemetry import configure_tracing


async def _serve(settings: Settings) -> None:
    await ExecutorApp(settings).run(stop_requested())


def main(argv: list[str]) -> int:
    if argv and argv[0] != "serve":
        sys.stderr.write("usage: python -m comfyserve.executor [serve]\n")
        return 2
    try:
        settings = Settings()
    except ValidationError as exc:
        configure_logging()
        structlog.get_logger(__name__).error(
            "executor.settings.invalid", error=str(exc)
        )
        return 2
    configure_logging(settings.log_level)
    # aiohttp reaches ComfyUI; httpx puts outputs to their presigned URLs.
    configure_tracing(
        "executor", [AioHttpClientInstrumentor(), HTTPXClientInstrumentor()]
    )
    asyncio.run(_serve(settings))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
