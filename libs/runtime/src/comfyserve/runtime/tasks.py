"""Background loops that live as long as the service, and the signals that
end it."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager

import structlog

from comfyserve.runtime.logging import describe_error

__all__ = ["Loop", "every", "stop_requested", "supervised"]

log = structlog.get_logger(__name__)

Loop = Callable[[], Awaitable[None]]


async def _supervise(name: str, run: Loop, restart_s: float) -> None:
    """Run a loop for the life of the service, restarting it when it fails
    unexpectedly: one failing loop must not leave the service half alive."""
    while True:
        try:
            await run()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("service.task.crashed", task=name)
        await asyncio.sleep(restart_s)


def every(
    interval_s: float,
    step: Callable[[], Awaitable[object]],
    *,
    failed: str,
    outages: tuple[type[Exception], ...],
) -> Loop:
    """A loop for `supervised` that runs `step`, then waits `interval_s`, until
    cancelled. An outage (an exception of the `outages` kinds) is logged as
    `failed` and the next round tries again; anything else is a bug, which the
    supervisor logs with its traceback before restarting the loop."""

    async def run() -> None:
        while True:
            try:
                await step()
            except outages as error:
                log.warning(failed, error=describe_error(error))
            await asyncio.sleep(interval_s)

    return run


@asynccontextmanager
async def supervised(
    loops: Mapping[str, Loop], *, restart_s: float = 1.0
) -> AsyncIterator[None]:
    """Each loop runs (and is restarted after a failure) until the block exits,
    then is cancelled."""
    tasks = [
        asyncio.create_task(_supervise(name, run, restart_s), name=name)
        for name, run in loops.items()
    ]
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def stop_requested() -> asyncio.Event:
    """An event set by SIGTERM (the orchestrator stopping the container) or
    SIGINT; call it on the running loop, before starting the service."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    return stop
