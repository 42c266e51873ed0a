"""A service's Postgres: its database URL in the forms each driver takes, the
name of its own schema, and an engine bound to that schema.

Needs the `database` extra (see `comfyserve.runtime.migrations`).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

import sqlalchemy.ext.asyncio as sa_asyncio
from pydantic import AfterValidator
from sqlalchemy.ext.asyncio import AsyncEngine

__all__ = [
    "PostgresUrl",
    "SchemaName",
    "asyncpg_dsn",
    "create_engine",
    "database_engine",
    "plain_identifier",
    "sqlalchemy_url",
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


def create_engine(url: str, schema: str) -> AsyncEngine:
    """Every connection's `search_path` is `schema`, so tables are declared
    without one and the same statements serve any schema a deployment names."""
    # Looked up at call time, so the SQLAlchemy instrumentation a traced
    # service installs at start sees every engine.
    return sa_asyncio.create_async_engine(
        sqlalchemy_url(url),
        pool_size=10,
        max_overflow=10,
        pool_pre_ping=True,
        # Bound parameters carry user text and secrets (prompts, password
        # hashes, key digests): never into an error or a log line.
        hide_parameters=True,
        connect_args={"server_settings": {"search_path": schema}},
    )


@asynccontextmanager
async def database_engine(url: str, schema: str) -> AsyncIterator[AsyncEngine]:
    """`create_engine`, its connections closed when the block exits."""
    engine = create_engine(url, schema)
    try:
        yield engine
    finally:
        await engine.dispose()
