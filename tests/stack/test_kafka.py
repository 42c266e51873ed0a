"""Kafka carries a contracts event between a producer and a consumer group."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from aiokafka import (  # type: ignore[import-untyped]
    AIOKafkaConsumer,
    AIOKafkaProducer,
    TopicPartition,
)

from comfyserve.contracts.events import (
    JobSubmitted,
    JobSubmittedData,
    Priority,
    dump_event,
    parse_event,
)

pytestmark = pytest.mark.integration

TRACEPARENT = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


async def test_event_round_trip_in_consumer_group(
    stack: dict[str, str], unique: str
) -> None:
    topic, group = f"test.{unique}", f"test-group-{unique}"
    event = JobSubmitted(
        source="tests/stack",
        subject=f"job-{unique}",
        tenant_id="tenant-a",
        data=JobSubmittedData(
            pool="default",
            priority=Priority.HIGH,
            attempt=1,
            timeout_seconds=60,
            deadline=datetime.now(UTC) + timedelta(minutes=1),
        ),
    )
    producer = AIOKafkaProducer(
        bootstrap_servers=stack["KAFKA_BOOTSTRAP_SERVERS"], enable_idempotence=True
    )
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=stack["KAFKA_BOOTSTRAP_SERVERS"],
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await producer.start()
    await consumer.start()
    try:
        await producer.send_and_wait(
            topic,
            dump_event(event),
            key=event.subject.encode(),
            headers=[("traceparent", TRACEPARENT)],
        )
        async with asyncio.timeout(30):
            record = await consumer.getone()
        await consumer.commit()
        received = parse_event(record.value)
        assert received == event
        assert record.key == event.subject.encode()
        assert dict(record.headers)["traceparent"] == TRACEPARENT
        committed = await consumer.committed(
            TopicPartition(record.topic, record.partition)
        )
        assert committed == record.offset + 1
    finally:
        await consumer.stop()
        await producer.stop()
