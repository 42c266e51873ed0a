"""Queries on the outbox. Never commits."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from opentelemetry import propagate
from sqlalchemy import delete, func, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from comfyserve.contracts.events import Event, dump_event
from comfyserve.contracts.topics import topic_for
from comfyserve.workflow.db import OUTBOX_CHANNEL, notify
from comfyserve.workflow.outbox.models import outbox


@dataclass(frozen=True, slots=True)
class OutboxMessage:
    id: int
    topic: str
    key: str
    payload: bytes
    headers: dict[str, str]
    created_at: datetime


async def add_event(conn: AsyncConnection, event: Event, now: datetime) -> None:
    """Queue `event` for the relay, with the current trace context, and wake
    the relay when the transaction commits."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    await conn.execute(
        insert(outbox).values(
            topic=topic_for(event),
            key=event.subject,
            payload=dump_event(event),
            headers=carrier,
            created_at=now,
        )
    )
    await notify(conn, OUTBOX_CHANNEL)


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


async def oldest_created_at(conn: AsyncConnection) -> datetime | None:
    value: datetime | None = (
        await conn.execute(select(func.min(outbox.c.created_at)))
    ).scalar_one()
    return value
