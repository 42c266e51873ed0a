"""Postgres LISTEN/NOTIFY: queue a notification in a unit of work, and listen
on a connection of one's own, reconnecting when it drops.

Needs the `database` extra (see `comfyserve.runtime.migrations`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import asyncpg
import structlog
from sqlalchemy import ARRAY, Select, Text, bindparam, func, literal, select, text
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.dml import UpdateBase

from comfyserve.runtime.database import unnested
from comfyserve.runtime.logging import describe_error

__all__ = ["listen_forever", "notify", "notify_all"]

log = structlog.get_logger(__name__)

_RECONNECT_SECONDS = 1.0
_KEEPALIVE_SECONDS = 30.0


async def notify(conn: AsyncConnection, channel: str, payload: str = "") -> None:
    """Queue a notification; Postgres delivers it when the transaction commits."""
    await conn.execute(
        text("SELECT pg_notify(:channel, :payload)"),
        {"channel": channel, "payload": payload},
    )


async def notify_all(
    conn: AsyncConnection,
    notifications: Iterable[tuple[str, str]],
    *,
    along: Sequence[UpdateBase] = (),
) -> None:
    """Queue several `(channel, payload)` notifications in one statement, in
    order; Postgres delivers them when the transaction commits.

    `along` are writes (inserts, updates, deletes) sent in the same statement
    as its common table expressions, one round trip for the lot. Postgres
    runs each of them once, to completion, on one snapshot: none sees
    another's rows, so they must touch different rows.
    """
    pairs = list(dict.fromkeys(notifications))
    if not pairs and not along:
        return
    statement: Select[Any]
    if pairs:
        queued = unnested(
            {
                "channel": bindparam(None, [c for c, _ in pairs], ARRAY(Text)),
                "payload": bindparam(None, [p for _, p in pairs], ARRAY(Text)),
            },
            ordinality="at",
        )
        statement = select(func.pg_notify(queued.c.channel, queued.c.payload))
        statement = statement.order_by(queued.c.at)
    else:
        statement = select(literal(1))
    writes = [write.cte(f"write_{index}") for index, write in enumerate(along)]
    await conn.execute(statement.add_cte(*writes))


async def listen_forever(
    dsn: str,
    channel: str,
    on_notify: Callable[[str], None],
    on_connect: Callable[[], None] | None = None,
    on_lost: Callable[[], None] | None = None,
) -> None:
    """LISTEN on `channel` (asyncpg `dsn`) until cancelled, reconnecting
    whenever the connection drops; `on_connect` runs after each (re)connect,
    since notifications sent while disconnected are gone, and `on_lost` each
    time a connection ends."""
    while True:
        try:
            connection = await asyncpg.connect(dsn)
        except (OSError, asyncpg.PostgresError) as error:
            log.warning(
                "database.listen.connect_failed",
                channel=channel,
                error=describe_error(error),
            )
            await asyncio.sleep(_RECONNECT_SECONDS)
            continue
        try:
            await _listen(connection, channel, on_notify, on_connect)
        finally:
            connection.terminate()
            if on_lost is not None:
                on_lost()


async def _listen(
    connection: asyncpg.Connection,
    channel: str,
    on_notify: Callable[[str], None],
    on_connect: Callable[[], None] | None,
) -> None:
    """Returns when the connection is lost."""
    lost = asyncio.Event()

    def dispatch(_conn: object, _pid: int, _channel: str, payload: object) -> None:
        on_notify(str(payload))

    connection.add_termination_listener(lambda _conn: lost.set())
    await connection.add_listener(channel, dispatch)
    if on_connect is not None:
        on_connect()
    log.info("database.listen.listening", channel=channel)
    while not lost.is_set():
        try:
            await asyncio.wait_for(lost.wait(), _KEEPALIVE_SECONDS)
        except TimeoutError:
            # A silently dropped connection only shows when it is used.
            try:
                await connection.execute("SELECT 1", timeout=_KEEPALIVE_SECONDS)
            except (OSError, asyncpg.PostgresError, TimeoutError):
                break
    log.warning("database.listen.connection_lost", channel=channel)
