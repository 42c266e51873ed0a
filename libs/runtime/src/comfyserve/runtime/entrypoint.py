"""A service's `__main__`: serve until SIGTERM or SIGINT, or only migrate.

Logs are configured before anything else runs, so no line is ever written
unformatted or unredacted; tracing only where the service serves.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
from collections.abc import Callable, Coroutine, Iterable
from contextlib import AbstractAsyncContextManager
from typing import Any, TypeVar

import structlog
from opentelemetry.instrumentation.instrumentor import (  # type: ignore[attr-defined]
    BaseInstrumentor,
)

from comfyserve.runtime.logging import configure_logging
from comfyserve.runtime.settings import ServiceSettings
from comfyserve.runtime.tasks import stop_requested
from comfyserve.runtime.telemetry import configure_tracing

__all__ = ["freeze_startup_heap", "serve_or_migrate", "serve_until_stopped"]

log = structlog.get_logger(__name__)

S = TypeVar("S", bound=ServiceSettings)


async def serve_until_stopped(
    service: str, running: Callable[[], AbstractAsyncContextManager[object]]
) -> None:
    """Enter `running` and leave it once SIGTERM or SIGINT arrives. The signal
    handlers go in first, so a stop asked for during start-up is not lost."""
    stop = stop_requested()
    async with running():
        freeze_startup_heap()
        await stop.wait()
        log.info(f"{service}.stopping")
    log.info(f"{service}.stopped")


def freeze_startup_heap() -> None:
    """Leave what start-up built out of every later garbage collection; call
    it once, when the service's app is built.

    A started service holds about 150,000 objects that live as long as it
    does (modules, classes, functions, pydantic and SQLAlchemy metadata).
    Every full collection scanned them all: a pause of 100 to 250 ms in the
    middle of whatever job was running, a few times per hundred jobs. Frozen,
    they are never scanned again; what the service builds later is collected
    as before.
    """
    gc.collect()
    gc.freeze()


def serve_or_migrate(
    service: str,
    settings: Callable[[], S],
    *,
    running: Callable[[S], AbstractAsyncContextManager[object]],
    migrate: Callable[[S], Coroutine[Any, Any, str]],
    migrate_before_running: bool,
    instrumentors: Iterable[BaseInstrumentor] = (),
) -> None:
    """`python -m comfyserve.<service> [serve|migrate]`.

    `serve` (the default) runs the service until stopped, applying the
    migrations first where `running` does not itself
    (`migrate_before_running`); `migrate` only applies them. `migrate`
    answers the schema it migrated. Settings are read after the arguments,
    so `--help` needs none.
    """
    parser = argparse.ArgumentParser(prog=f"python -m comfyserve.{service}")
    parser.add_argument(
        "command", nargs="?", choices=["serve", "migrate"], default="serve"
    )
    command = parser.parse_args().command
    settings_ = settings()
    configure_logging(settings_.log_level)
    if command == "migrate":
        schema = asyncio.run(migrate(settings_))
        log.info(f"{service}.migrated", schema=schema)
        return
    configure_tracing(service, instrumentors)

    async def serve() -> None:
        if migrate_before_running:
            await migrate(settings_)
        await serve_until_stopped(service, lambda: running(settings_))

    asyncio.run(serve())
