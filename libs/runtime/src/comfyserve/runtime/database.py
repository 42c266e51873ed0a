"""A service's Postgres: its database URL in the forms each driver takes, the
name of its own schema, and an engine bound to that schema.

Needs the `database` extra (see `comfyserve.runtime.migrations`).
"""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Annotated, Any

import sqlalchemy.ext.asyncio as sa_asyncio
from pydantic import AfterValidator
from sqlalchemy import event, exc, func
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
)
from sqlalchemy.pool import ConnectionPoolEntry
from sqlalchemy.sql.elements import BindParameter
from sqlalchemy.sql.selectable import TableValuedAlias

__all__ = [
    "PostgresUrl",
    "SchemaName",
    "asyncpg_dsn",
    "autocommit",
    "autocommit_session",
    "create_engine",
    "delete_in_batches",
    "database_engine",
    "plain_identifier",
    "sqlalchemy_url",
    "unnested",
]

_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def plain_identifier(value: str) -> str:
    """`value` if it may name a schema; a schema name is spliced into DDL and
    `search_path`, so only plain identifiers pass: nothing to quote or inject."""
    if not _IDENTIFIER.fullmatch(value):
        raise ValueError("must be a lower-case SQL identifier")
    return value


SchemaName = Annotated[str, AfterValidator(plain_identifier)]
"""A settings field naming the service's schema."""


def asyncpg_dsn(url: str) -> str:
    """`url` as plain asyncpg takes it (`postgresql://`, no driver)."""
    scheme, separator, rest = url.partition("://")
    if not separator or scheme.split("+", 1)[0] not in ("postgresql", "postgres"):
        raise ValueError("the database URL must be a postgresql:// URL")
    return "postgresql://" + rest


def sqlalchemy_url(url: str) -> str:
    """`url` as SQLAlchemy takes it, with the asyncpg driver."""
    return "postgresql+asyncpg://" + asyncpg_dsn(url).split("://", 1)[1]


def _postgres_url(url: str) -> str:
    asyncpg_dsn(url)
    return url


PostgresUrl = Annotated[str, AfterValidator(_postgres_url)]
"""A settings field holding the database URL, in any driver's form: refused
at start when it names no Postgres database."""


# A connection back in the pool for less than this is taken as alive.
PING_AFTER_IDLE_S = 1.0
_CHECKED_IN_AT = "comfyserve.checked_in_at"


def create_engine(
    url: str, schema: str, *, ping_after_idle_s: float = PING_AFTER_IDLE_S
) -> AsyncEngine:
    """Every connection's `search_path` is `schema`, so tables are declared
    without one and the same statements serve any schema a deployment names.

    A connection idle in the pool for `ping_after_idle_s` or more is pinged
    when checked out, and replaced if it is gone (a restarted or failed-over
    database): see `_ping_when_idle`."""
    # Looked up at call time, so the SQLAlchemy instrumentation a traced
    # service installs at start sees every engine.
    engine = sa_asyncio.create_async_engine(
        sqlalchemy_url(url),
        pool_size=10,
        max_overflow=10,
        # Bound parameters carry user text and secrets (prompts, password
        # hashes, key digests): never into an error or a log line.
        hide_parameters=True,
        connect_args={"server_settings": {"search_path": schema}},
    )
    _ping_when_idle(engine, ping_after_idle_s)
    return engine


def _ping_when_idle(engine: AsyncEngine, after_s: float) -> None:
    """SQLAlchemy's `pool_pre_ping` pings on every check-out, and the asyncpg
    dialect's ping is three round trips (BEGIN, `;`, ROLLBACK): on a busy
    service more than its own statements. A connection checked in moments
    ago was alive then; only one idle longer is pinged. One whose server went
    away within that moment fails its first statement, and SQLAlchemy then
    replaces every pooled connection older than the failure, as it would
    have after a failed ping."""
    pool = engine.sync_engine.pool

    @event.listens_for(pool, "checkin")
    def checked_in(dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
        record.info[_CHECKED_IN_AT] = time.monotonic()

    @event.listens_for(pool, "checkout")
    def checked_out(
        dbapi_connection: Any, record: ConnectionPoolEntry, proxy: Any
    ) -> None:
        since = record.info.get(_CHECKED_IN_AT)
        # A new connection (no check-in yet) was just made: nothing to ask.
        if since is None or time.monotonic() - since < after_s:
            return
        try:
            dbapi_connection.ping()
        except Exception as error:
            # The pool replaces this and every older connection, then
            # retries the check-out on a new one.
            raise exc.InvalidatePoolError() from error


@asynccontextmanager
async def database_engine(url: str, schema: str) -> AsyncIterator[AsyncEngine]:
    """`create_engine`, its connections closed when the block exits."""
    engine = create_engine(url, schema)
    try:
        yield engine
    finally:
        await engine.dispose()


# Each statement a transaction of its own.
_AUTOCOMMIT = {"isolation_level": "AUTOCOMMIT"}


@asynccontextmanager
async def autocommit(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A connection of `engine` whose statements run each in a transaction of
    its own: for reads of one statement (or of several that need no common
    snapshot) and writes of one statement. An explicit transaction costs such
    a call two more round trips (BEGIN before, COMMIT or ROLLBACK after):
    about 250 µs of the 570 a one-row read takes on an idle machine, and CPU
    on both sides. The connection goes back to the pool as it came."""
    async with engine.connect() as conn:
        await conn.execution_options(**_AUTOCOMMIT)
        yield conn


@asynccontextmanager
async def autocommit_session(
    sessions: async_sessionmaker[AsyncSession],
) -> AsyncIterator[AsyncSession]:
    """`autocommit` for an ORM session of `sessions`."""
    async with sessions() as session:
        await session.connection(execution_options=_AUTOCOMMIT)
        yield session


def unnested(
    columns: Mapping[str, BindParameter[Any]], *, ordinality: str | None = None
) -> TableValuedAlias:
    """Rows from one array parameter a column (`unnest($1, $2, ...)`), named
    by the keys of `columns`, and with each row's position as the column
    `ordinality` when it is given (for `ORDER BY`). A statement over them is
    the same for any number of rows, so SQLAlchemy compiles it once and
    Postgres plans it once; a multi-row VALUES is new at every row count."""
    return (
        func.unnest(*columns.values())
        .table_valued(*columns, with_ordinality=ordinality)
        .render_derived()
    )


async def delete_in_batches(
    engine: AsyncEngine,
    delete: Callable[[AsyncConnection, int], Awaitable[int]],
    *,
    batch: int,
    rounds: int,
) -> int:
    """Runs `delete(conn, limit)` (it deletes up to `limit` rows and says how
    many) until it deletes fewer than `batch`, at most `rounds` times, each a
    transaction of its own; how many rows went. For retention sweeps: a
    backlog goes over several passes, never as one long delete holding locks
    and a snapshot for as long as it takes."""
    deleted = 0
    async with autocommit(engine) as conn:
        for _ in range(rounds):
            count = await delete(conn, batch)
            deleted += count
            if count < batch:
                break
    return deleted
