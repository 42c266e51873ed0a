"""`notify_all` against a real Postgres: its notifications reach a listener
once, in order, at commit and not before, and the writes sent along with
them are made in the same statement, or not at all when the transaction
rolls back."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from uuid import uuid4

import asyncpg
import pytest
from sqlalchemy import Column, Integer, MetaData, Table, Text, insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from comfyserve.runtime.database import asyncpg_dsn, create_engine
from comfyserve.runtime.notifications import notify_all

pytestmark = pytest.mark.integration

_metadata = MetaData()
_rows = Table(
    f"notify_all_{uuid4().hex}",
    _metadata,
    Column("id", Integer, primary_key=True),
    Column("note", Text, nullable=False),
)


class _Listener:
    def __init__(self, channel: str) -> None:
        self.channel = channel
        self.payloads: list[str] = []
        self.arrived = asyncio.Event()

    def __call__(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        self.payloads.append(payload)
        self.arrived.set()

    async def settled(self) -> list[str]:
        """The payloads once the last one has been in for a moment (a
        notification's delivery is asynchronous to the commit's reply)."""
        await asyncio.wait_for(self.arrived.wait(), timeout=10)
        seen = -1
        while seen != len(self.payloads):
            seen = len(self.payloads)
            await asyncio.sleep(0.2)
        return self.payloads


@pytest.fixture
async def listener(stack: dict[str, str]) -> AsyncIterator[_Listener]:
    listening = _Listener(f"notify_all_{uuid4().hex}")
    conn = await asyncpg.connect(asyncpg_dsn(stack["DATABASE_URL"]))
    await conn.add_listener(listening.channel, listening)
    try:
        yield listening
    finally:
        await conn.close()


@pytest.fixture
async def engine(stack: dict[str, str]) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(stack["DATABASE_URL"], "public")
    async with engine.begin() as conn:
        await conn.run_sync(_metadata.create_all)
        await conn.execute(insert(_rows).values(id=1, note="old"))
    try:
        yield engine
    finally:
        async with engine.begin() as conn:
            await conn.run_sync(_metadata.drop_all)
        await engine.dispose()


async def _notes(engine: AsyncEngine) -> dict[int, str]:
    async with engine.connect() as conn:
        rows = await conn.execute(select(_rows.c.id, _rows.c.note))
        return {row.id: row.note for row in rows}


async def test_notifications_arrive_once_in_order_at_commit_with_the_writes_made(
    engine: AsyncEngine, listener: _Listener
) -> None:
    channel = listener.channel
    async with engine.begin() as conn:
        await notify_all(
            conn,
            [(channel, "b"), (channel, "a"), (channel, "b"), (channel, "c")],
            along=[
                update(_rows).where(_rows.c.id == 1).values(note="new"),
                insert(_rows).values([{"id": 2, "note": "x"}, {"id": 3, "note": "y"}]),
            ],
        )
        await asyncio.sleep(0.3)
        assert listener.payloads == []

    assert await listener.settled() == ["b", "a", "c"]
    assert await _notes(engine) == {1: "new", 2: "x", 3: "y"}


async def test_writes_alone_are_made_without_a_notification(
    engine: AsyncEngine, listener: _Listener
) -> None:
    async with engine.begin() as conn:
        await notify_all(conn, [], along=[insert(_rows).values(id=2, note="x")])
        await notify_all(conn, [(listener.channel, "after")])

    assert await listener.settled() == ["after"]
    assert await _notes(engine) == {1: "old", 2: "x"}


async def test_a_rolled_back_transaction_sends_nothing_and_writes_nothing(
    engine: AsyncEngine, listener: _Listener
) -> None:
    async with engine.connect() as conn:
        async with conn.begin() as transaction:
            await notify_all(
                conn,
                [(listener.channel, "lost")],
                along=[update(_rows).values(note="lost")],
            )
            await transaction.rollback()
        async with conn.begin():
            await notify_all(conn, [(listener.channel, "kept")])

    assert await listener.settled() == ["kept"]
    assert await _notes(engine) == {1: "old"}
