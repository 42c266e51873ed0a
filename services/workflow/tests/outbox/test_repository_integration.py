"""The outbox's insert against a real Postgres: rows in the order given, each
with its event's topic, key, payload and trace headers; and one statement,
compiled once, for any number of events."""

import uuid
from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from comfyserve.contracts.events import JobCancelRequested, JobCancelRequestedData
from comfyserve.contracts.headers import TRACEPARENT
from comfyserve.runtime.kafka import encode_event
from comfyserve.workflow.outbox import repository
from comfyserve.workflow.outbox.models import outbox


def _event(reason: str) -> JobCancelRequested:
    return JobCancelRequested(
        source="test",
        subject=str(uuid.uuid4()),
        data=JobCancelRequestedData(reason=reason),
    )


def test_the_insert_is_one_cached_statement_for_any_number_of_events() -> None:
    now = datetime.now(UTC)
    one = repository.events_insert([(_event("a"), None)], now)
    three = repository.events_insert([(_event(r), None) for r in "bcd"], now)

    key = one._generate_cache_key()
    assert key is not None
    assert key == three._generate_cache_key()


@pytest.mark.integration
async def test_rows_keep_the_order_and_fields_of_their_events(runtime) -> None:
    now = datetime.now(UTC)
    traceparent = f"00-{uuid.uuid4().hex}-{uuid.uuid4().hex[:16]}-01"
    given = [(_event("first"), traceparent), (_event("second"), None)]
    given.append((_event("third"), None))
    async with runtime.engine.connect() as conn, conn.begin() as transaction:
        await repository.insert_events(conn, given, now)
        keys = [event.subject for event, _ in given]
        query = select(outbox).where(outbox.c.key.in_(keys)).order_by(outbox.c.id)
        rows = (await conn.execute(query)).all()
        await transaction.rollback()

    assert [row.key for row in rows] == keys
    assert [(row.topic, row.payload) for row in rows] == [
        encode_event(event) for event, _ in given
    ]
    assert rows[0].headers == {TRACEPARENT: traceparent}
    assert [row.headers for row in rows[1:]] == [{}, {}]
    assert {row.created_at for row in rows} == {now}
