"""Queries on the outbox. Never commits."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import (
    ARRAY,
    DateTime,
    Insert,
    LargeBinary,
    Text,
    bindparam,
    cast,
    delete,
    func,
    insert,
    select,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncConnection

from comfyserve.contracts.events import Event
from comfyserve.contracts.headers import TRACEPARENT
from comfyserve.runtime.database import unnested
from comfyserve.runtime.kafka import encode_event
from comfyserve.runtime.notifications import notify
from comfyserve.runtime.telemetry import inject_headers
from comfyserve.workflow.db import OUTBOX_CHANNEL
from comfyserve.workflow.outbox.models import outbox, outbox_dead


@dataclass(frozen=True, slots=True)
class OutboxMessage:
    id: int
    topic: str
    key: str
    payload: bytes
    headers: dict[str, str]
    created_at: datetime


WAKE_RELAY = (OUTBOX_CHANNEL, "")
"""The notification that wakes the relay, for callers of `insert_events` that
send their transaction's notifications together."""


async def add_event(
    conn: AsyncConnection,
    event: Event,
    now: datetime,
    traceparent: str | None = None,
) -> None:
    """Queue `event` for the relay, with the current trace context (or, with
    no span current, `traceparent`'s), and wake the relay when the
    transaction commits. An event too large for its topic is refused here
    (`EventTooLargeError`), in the transaction that caused it, rather than by
    the broker later."""
    await insert_events(conn, [(event, traceparent)], now)
    await notify(conn, *WAKE_RELAY)


async def insert_events(
    conn: AsyncConnection,
    events: Sequence[tuple[Event, str | None]],
    now: datetime,
) -> None:
    """`add_event` for several `(event, traceparent)` in one statement, in
    order, without the wake-up: the caller sends `WAKE_RELAY` in the same
    transaction."""
    if events:
        await conn.execute(events_insert(events, now))


def events_insert(events: Sequence[tuple[Event, str | None]], now: datetime) -> Insert:
    """The statement of `insert_events` (`events` not empty): the rows as one
    array a column, unnested in order, so that the statement is the same for
    any number of events and SQLAlchemy compiles it once (a multi-row VALUES
    is compiled anew on every execution)."""
    carrier = inject_headers()
    topics, keys, payloads, headers = [], [], [], []
    for event, traceparent in events:
        topic, payload = encode_event(event)
        topics.append(topic)
        keys.append(event.subject)
        payloads.append(payload)
        if TRACEPARENT not in carrier and traceparent is not None:
            headers.append(json.dumps({TRACEPARENT: traceparent}))
        else:
            headers.append(json.dumps(carrier))
    rows = unnested(
        {
            "topic": bindparam(None, topics, ARRAY(Text)),
            "key": bindparam(None, keys, ARRAY(Text)),
            "payload": bindparam(None, payloads, ARRAY(LargeBinary)),
            "headers": bindparam(None, headers, ARRAY(Text)),
        },
        ordinality="at",
    )
    ordered = select(
        rows.c.topic,
        rows.c.key,
        rows.c.payload,
        cast(rows.c.headers, JSONB),
        bindparam(None, now, DateTime(timezone=True)),
    ).order_by(rows.c.at)
    columns = ["topic", "key", "payload", "headers", "created_at"]
    return insert(outbox).from_select(columns, ordered)


async def lock_batch(conn: AsyncConnection, limit: int) -> list[OutboxMessage]:
    """The oldest rows no other relay holds, locked until the transaction ends."""
    query = (
        select(outbox)
        .order_by(outbox.c.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return [
        OutboxMessage(
            id=row.id,
            topic=row.topic,
            key=row.key,
            payload=row.payload,
            headers=dict(row.headers),
            created_at=row.created_at,
        )
        for row in await conn.execute(query)
    ]


async def delete_rows(conn: AsyncConnection, ids: Sequence[int]) -> None:
    await conn.execute(delete(outbox).where(outbox.c.id.in_(ids)))


async def bury(
    conn: AsyncConnection, message: OutboxMessage, error: str, now: datetime
) -> None:
    """Move a row the relay can never send to `outbox_dead`."""
    await conn.execute(
        insert(outbox_dead).values(
            id=message.id,
            topic=message.topic,
            key=message.key,
            payload=message.payload,
            headers=message.headers,
            created_at=message.created_at,
            failed_at=now,
            error=error,
        )
    )
    await delete_rows(conn, [message.id])


_BACKLOG_CAP = 10_000


async def waiting(conn: AsyncConnection) -> tuple[datetime | None, int]:
    """The oldest waiting row's time and how many rows wait, counted up to
    `_BACKLOG_CAP` (a relay far behind must not also scan the whole table on
    every pass), in one statement."""
    # The lowest id is the oldest row: the primary key answers, no scan.
    oldest = select(outbox.c.created_at).order_by(outbox.c.id).limit(1)
    capped = select(outbox.c.id).limit(_BACKLOG_CAP).subquery()
    count = select(func.count()).select_from(capped)
    row = (
        await conn.execute(select(oldest.scalar_subquery(), count.scalar_subquery()))
    ).one()
    return row[0], int(row[1])
