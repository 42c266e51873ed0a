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
    """Wakes the waiters of a key when a notification names it.

    With `wake_one`, a notification wakes one waiter of its key (the one
    subscribed longest among those not woken yet) rather than all, and every
    waiter leaving wakes the next: for waiters competing for work only one of
    them gets, a pool's executors, which all re-read on every wake otherwise.
    The hand-on covers what one wake cannot: a waiter that was woken and left
    without re-reading, and notifications Postgres merged into one (those of
    one transaction with the same key, several jobs queued at once)."""

    def __init__(self, dsn: str, channel: str, *, wake_one: bool = False) -> None:
        self._dsn = dsn
        self._channel = channel
        self._wake_one = wake_one
        # Ordered by subscription: a dict keeps insertion order.
        self._waiters: dict[str, dict[asyncio.Event, None]] = {}
        self.ready = asyncio.Event()

    @contextmanager
    def subscribe(self, key: str) -> Iterator[asyncio.Event]:
        """An event set whenever `key` may have changed; the caller clears it
        before re-reading."""
        event = asyncio.Event()
        self._waiters.setdefault(key, {})[event] = None
        try:
            yield event
        finally:
            waiters = self._waiters.get(key)
            if waiters is not None:
                waiters.pop(event, None)
                if not waiters:
                    del self._waiters[key]
                elif self._wake_one:
                    self._wake_next(waiters)

    def _on_notify(self, key: str) -> None:
        waiters = self._waiters.get(key, {})
        if self._wake_one:
            self._wake_next(waiters)
            return
        for event in waiters:
            event.set()

    @staticmethod
    def _wake_next(waiters: dict[asyncio.Event, None]) -> None:
        for event in waiters:
            if not event.is_set():
                event.set()
                return

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
