"""One LISTEN connection per channel and process, waking whoever waits on a key.

A notification carries only a key (a job id, a pool); waiters re-read what they
wait for, so several notifications coalesce into one read and none carries
state that could be stale. After a reconnect every waiter is woken, since
notifications sent meanwhile are gone.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager

from comfyserve.runtime.notifications import listen_forever


class ChannelListener:
    def __init__(self, dsn: str, channel: str) -> None:
        self._dsn = dsn
        self._channel = channel
        self._waiters: dict[str, set[asyncio.Event]] = {}
        self.ready = asyncio.Event()

    @contextmanager
    def subscribe(self, key: str) -> Iterator[asyncio.Event]:
        """An event set whenever `key` may have changed; the caller clears it
        before re-reading."""
        event = asyncio.Event()
        self._waiters.setdefault(key, set()).add(event)
        try:
            yield event
        finally:
            waiters = self._waiters.get(key)
            if waiters is not None:
                waiters.discard(event)
                if not waiters:
                    del self._waiters[key]

    def _on_notify(self, key: str) -> None:
        for event in self._waiters.get(key, ()):
            event.set()

    def _on_connect(self) -> None:
        for waiters in self._waiters.values():
            for event in waiters:
                event.set()
        self.ready.set()

    async def run(self) -> None:
        """Listen until cancelled."""
        await listen_forever(
            self._dsn, self._channel, self._on_notify, self._on_connect
        )
