"""The channel listener over a real LISTEN connection: who a notification
wakes, and how a wake is handed on among waiters competing for work."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import ExitStack, asynccontextmanager, suppress

import asyncpg
import pytest

from comfyserve.workflow.jobs.watch import ChannelListener
from comfyserve.workflow.settings import Settings

pytestmark = pytest.mark.integration

# Set once the listener has handled every notification sent before it: one
# session's notifications arrive in the order they were sent.
_FENCE = "fence"


@asynccontextmanager
async def listening(
    settings: Settings, *, wake_one: bool = False
) -> AsyncIterator[tuple[ChannelListener, str]]:
    channel = f"test_{uuid.uuid4().hex[:12]}"
    listener = ChannelListener(settings.asyncpg_dsn, channel, wake_one=wake_one)
    task = asyncio.create_task(listener.run())
    try:
        await asyncio.wait_for(listener.ready.wait(), 30)
        yield listener, channel
    finally:
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task


async def notify(
    db: asyncpg.Connection, listener: ChannelListener, channel: str, *keys: str
) -> None:
    """Sends `keys` in one transaction and returns once the listener has
    handled them."""
    with listener.subscribe(_FENCE) as fence:
        async with db.transaction():
            for key in keys:
                await db.execute("SELECT pg_notify($1, $2)", channel, key)
        await db.execute("SELECT pg_notify($1, $2)", channel, _FENCE)
        await asyncio.wait_for(fence.wait(), 30)


def woken(events: list[asyncio.Event]) -> list[int]:
    return [index for index, event in enumerate(events) if event.is_set()]


async def test_a_notification_wakes_every_waiter_of_its_key_only(
    settings: Settings, db: asyncpg.Connection
) -> None:
    async with listening(settings) as (listener, channel):
        with (
            listener.subscribe("job-a") as first,
            listener.subscribe("job-a") as second,
            listener.subscribe("job-b") as other,
        ):
            await notify(db, listener, channel, "job-a")
            assert woken([first, second, other]) == [0, 1]


async def test_with_wake_one_a_notification_wakes_the_longest_waiting_only(
    settings: Settings, db: asyncpg.Connection
) -> None:
    async with listening(settings, wake_one=True) as (listener, channel):
        with (
            listener.subscribe("pool") as first,
            listener.subscribe("pool") as second,
            listener.subscribe("pool") as third,
        ):
            events = [first, second, third]
            await notify(db, listener, channel, "pool")
            assert woken(events) == [0]
            # The next goes to the next waiter not woken yet.
            await notify(db, listener, channel, "pool")
            assert woken(events) == [0, 1]
            # A woken waiter that clears and waits again is first in line.
            first.clear()
            await notify(db, listener, channel, "pool")
            assert woken(events) == [0, 1]


async def test_with_wake_one_a_waiter_leaving_wakes_the_next(
    settings: Settings, db: asyncpg.Connection
) -> None:
    async with listening(settings, wake_one=True) as (listener, channel):
        with listener.subscribe("pool") as second, listener.subscribe("pool") as third:
            with listener.subscribe("pool") as first:
                await notify(db, listener, channel, "pool")
                assert (first.is_set(), second.is_set()) == (False, True)
            # `first` left without being woken: it still hands one on, as a
            # waiter leaving with a job does, for work one wake did not name.
            assert woken([second, third]) == [0, 1]


async def test_with_wake_one_merged_notifications_still_reach_every_job(
    settings: Settings, db: asyncpg.Connection
) -> None:
    """Two jobs queued in one transaction make one notification (Postgres
    merges equal ones); the waiter it wakes takes one and, leaving, wakes the
    next for the other."""
    async with listening(settings, wake_one=True) as (listener, channel):
        with ExitStack() as taking:
            first = taking.enter_context(listener.subscribe("pool"))
            with listener.subscribe("pool") as second:
                await notify(db, listener, channel, "pool", "pool")
                assert (first.is_set(), second.is_set()) == (True, False)
                taking.close()
                assert second.is_set()
