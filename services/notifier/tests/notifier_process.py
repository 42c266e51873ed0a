"""A notifier process for the kill tests: the real service, from `NOTIFIER_*`
variables, with the fake job source in place of the workflow and storage
services. Stops on SIGTERM; the tests kill it with SIGKILL."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from support import FakeJobs  # type: ignore[import-not-found]

from comfyserve.notifier.app import running
from comfyserve.notifier.settings import Settings
from comfyserve.runtime.logging import configure_logging
from comfyserve.runtime.tasks import stop_requested


async def main() -> None:
    settings = Settings()
    configure_logging(settings.log_level)
    stop = stop_requested()
    async with running(settings, jobs=FakeJobs()):
        sys.stdout.write("notifier process started\n")
        sys.stdout.flush()
        await stop.wait()


if __name__ == "__main__":
    asyncio.run(main())
