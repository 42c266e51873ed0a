"""A pooled connection whose server went away: replaced at check-out when it
sat idle, and after one failed statement when it was checked in moments ago.
Reads outside a transaction, the pool's connections transactional after."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
)

from comfyserve.runtime.database import autocommit, autocommit_session, create_engine

pytestmark = pytest.mark.integration


async def _backend_pid(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one())


async def _terminate(url: str, pid: int) -> None:
    killer = create_engine(url, "public")
    try:
        async with killer.connect() as conn:
            query = text("SELECT pg_terminate_backend(:pid)")
            assert (await conn.execute(query, {"pid": pid})).scalar_one()
    finally:
        await killer.dispose()


async def test_an_idle_connection_that_is_gone_is_replaced_at_check_out(
    stack: dict[str, str],
) -> None:
    url = stack["DATABASE_URL"]
    engine = create_engine(url, "public", ping_after_idle_s=0)
    try:
        gone = await _backend_pid(engine)
        await _terminate(url, gone)

        assert await _backend_pid(engine) != gone
    finally:
        await engine.dispose()


async def test_a_connection_just_back_is_not_pinged_and_one_failure_renews_the_pool(
    stack: dict[str, str],
) -> None:
    url = stack["DATABASE_URL"]
    engine = create_engine(url, "public", ping_after_idle_s=3600)
    try:
        gone = await _backend_pid(engine)
        await _terminate(url, gone)

        with pytest.raises(DBAPIError) as failed:
            await _backend_pid(engine)
        assert failed.value.connection_invalidated
        assert await _backend_pid(engine) != gone
    finally:
        await engine.dispose()


_TRANSACTION_ID = text("SELECT pg_backend_pid(), txid_current()")


async def _twice(conn: AsyncConnection | AsyncSession) -> set[tuple[int, int]]:
    """The (backend, transaction) of two statements in a row."""
    rows = [(await conn.execute(_TRANSACTION_ID)).one() for _ in range(2)]
    return {(int(pid), int(xid)) for pid, xid in rows}


async def test_reads_run_each_statement_on_its_own_and_the_connection_returns_as_it_was(
    stack: dict[str, str],
) -> None:
    engine = create_engine(stack["DATABASE_URL"], "public")
    try:
        async with autocommit(engine) as conn:
            outside = await _twice(conn)
        async with autocommit_session(async_sessionmaker(engine)) as session:
            outside_orm = await _twice(session)
        async with engine.connect() as conn:
            inside = await _twice(conn)
    finally:
        await engine.dispose()
    # One connection served all three, one after the other.
    assert len({pid for pid, _ in outside | outside_orm | inside}) == 1
    assert (len(outside), len(outside_orm)) == (2, 2)
    assert len(inside) == 1
