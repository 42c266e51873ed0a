"""One LISTEN connection per process that wakes the watchers of a job.

A notification carries only the job id; watchers re-read the job, so several
notifications coalesce into one read and none carries state that could be
stale. After a reconnect every watcher is woken, since notifications sent
meanwhile are gone.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager

from comfyserve.workflow.db import JOBS_CHANNEL, listen_forever


class JobChangeListener:
    def __init__(self, dsn: str) -> None:
        self._dsn = dsn
        self._watchers: dict[str, set[asyncio.Event]] = {}
        self.ready = asyncio.Event()

    @contextmanager
    def subscribe(self, job_id: str) -> Iterator[asyncio.Event]:
        """An event set whenever the job may have changed; the caller clears it
        before re-reading."""
        event = asyncio.Event()
        self._watchers.setdefault(job_id, set()).add(event)
        try:
            yield event
        finally:
            watchers = self._watchers.get(job_id)
            if watchers is not None:
                watchers.discard(event)
                if not watchers:
                    del self._watchers[job_id]

    def _on_notify(self, job_id: str) -> None:
        for event in self._watchers.get(job_id, ()):
            event.set()

    def _on_connect(self) -> None:
        for watchers in self._watchers.values():
            for event in watchers:
                event.set()
        self.ready.set()

    async def run(self) -> None:
        """Listen until cancelled."""
        await listen_forever(self._dsn, JOBS_CHANNEL, self._on_notify, self._on_connect)
