"""The relay against real Postgres and Kafka: a row it can never send is put
aside, and every other row flows."""

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from comfyserve.contracts.events import JobCancelRequested, JobCancelRequestedData
from comfyserve.contracts.limits import EVENT_MAX_BYTES
from comfyserve.contracts.topics import CANCEL_REQUESTED
from comfyserve.runtime.kafka import EventTooLargeError
from comfyserve.workflow.outbox import repository
from comfyserve.workflow.outbox.models import outbox

pytestmark = pytest.mark.integration


async def test_a_row_too_large_for_its_topic_is_buried_and_the_rest_flow(
    db, probe, runtime, eventually
):
    poison_key, good_key = str(uuid.uuid4()), str(uuid.uuid4())
    good = JobCancelRequested(
        source="test", subject=good_key, data=JobCancelRequestedData(reason="ok")
    )
    # Written as an older version could have written it: past the topic's limit.
    await db.execute(
        "INSERT INTO outbox (topic, key, payload, headers, created_at)"
        " VALUES ($1, $2, $3, '{}', $4)",
        CANCEL_REQUESTED,
        poison_key,
        b"x" * (EVENT_MAX_BYTES + 1),
        datetime.now(UTC),
    )
    async with runtime.engine.begin() as conn:
        await repository.add_event(conn, good, datetime.now(UTC))

    await probe.wait_for(good_key, lambda _t, e: e.id == good.id, within=30)

    async def relay_lags() -> float | None:
        return runtime.metrics.registry.get_sample_value(
            "workflow_outbox_relay_lag_seconds_count"
        )

    # Its time from write to publication is observed, once the relay's round
    # ends: the probe may read the record before the relay has its ack.
    await eventually(relay_lags, bool)
    assert (
        runtime.metrics.registry.get_sample_value("workflow_outbox_backlog") is not None
    )
    dead = await eventually(
        lambda: db.fetchrow(
            "SELECT topic, error FROM outbox_dead WHERE key = $1", poison_key
        ),
        lambda row: row is not None,
    )
    assert dead["topic"] == CANCEL_REQUESTED
    assert "EventTooLargeError" in dead["error"]
    assert (
        await db.fetchval("SELECT count(*) FROM outbox WHERE key = $1", poison_key) == 0
    )


async def test_an_event_too_large_is_refused_in_the_transaction_that_makes_it(
    runtime,
):
    event = JobCancelRequested(
        source="test",
        subject=str(uuid.uuid4()),
        data=JobCancelRequestedData(reason="x" * EVENT_MAX_BYTES),
    )
    with pytest.raises(EventTooLargeError):
        async with runtime.engine.begin() as conn:
            await repository.add_event(conn, event, datetime.now(UTC))


async def test_waiting_names_the_oldest_row_and_counts_them_in_one_read(runtime):
    first = datetime(2026, 1, 1, tzinfo=UTC)
    async with runtime.engine.connect() as conn:
        transaction = await conn.begin()
        try:
            # Seen only by this transaction, which is rolled back: the rows of
            # other tests go, three of this test's come.
            await conn.execute(outbox.delete())
            assert await repository.waiting(conn) == (None, 0)
            for minutes in range(3):
                event = JobCancelRequested(
                    source="test",
                    subject=str(uuid.uuid4()),
                    data=JobCancelRequestedData(reason="counted"),
                )
                await repository.add_event(
                    conn, event, first + timedelta(minutes=minutes)
                )
            assert await repository.waiting(conn) == (first, 3)
        finally:
            await transaction.rollback()
