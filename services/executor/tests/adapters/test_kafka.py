"""KafkaPublisher on a fake producer: retries through an outage, refuses what
its topic can never take."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiokafka.errors import KafkaTimeoutError, RequestTimedOutError

from comfyserve.contracts.events import (
    Event,
    FailureCode,
    JobCompleted,
    JobCompletedData,
    JobFailed,
    JobFailedData,
    dump_event,
)
from comfyserve.contracts.headers import CONTENT_TYPE, EVENT_CONTENT_TYPE
from comfyserve.contracts.limits import EVENT_MAX_BYTES
from comfyserve.contracts.topics import COMPLETED
from comfyserve.executor.adapters.kafka import KafkaPublisher
from comfyserve.runtime.kafka import EventTooLargeError


class FakeProducer:
    """aiokafka's `send`: each call takes the next of `send_errors` (raised)
    or of `delivery_errors` (the delivery fails) while any are left."""

    def __init__(self) -> None:
        self.send_errors: list[Exception] = []
        self.delivery_errors: list[Exception] = []
        self.hold = False
        self.sent: list[dict[str, Any]] = []

    async def send(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> asyncio.Future[object]:
        self.sent.append(
            {"topic": topic, "value": value, "key": key, "headers": headers}
        )
        if self.send_errors:
            raise self.send_errors.pop(0)
        delivery: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        if self.delivery_errors:
            delivery.set_exception(self.delivery_errors.pop(0))
        elif not self.hold:
            delivery.set_result(None)
        return delivery


class Sleeps:
    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


def publisher() -> tuple[KafkaPublisher, FakeProducer, Sleeps]:
    producer, sleeps = FakeProducer(), Sleeps()
    return (
        KafkaPublisher("unused:9092", "w-1", sleep=sleeps, producer=producer),
        producer,
        sleeps,
    )


def completed() -> JobCompleted:
    return JobCompleted(
        source="executor/w-1",
        subject="job-1",
        tenant_id="tenant-a",
        data=JobCompletedData(attempt=1, worker_id="w-1", outputs=[], duration_ms=5),
    )


def oversized() -> Event:
    return JobFailed(
        source="executor/w-1",
        subject="job-1",
        data=JobFailedData(
            attempt=1,
            code=FailureCode.INTERNAL_ERROR,
            message="x" * EVENT_MAX_BYTES,
            retryable=True,
        ),
    )


async def test_publish_retries_a_failing_send_until_delivered():
    kafka, producer, sleeps = publisher()
    producer.send_errors = [KafkaTimeoutError(), KafkaTimeoutError()]
    event = completed()

    await kafka.publish(event)

    assert len(producer.sent) == 3
    assert sleeps.delays == [0.5, 1.0]
    last = producer.sent[-1]
    assert (last["topic"], last["key"], last["value"]) == (
        COMPLETED,
        b"job-1",
        dump_event(event),
    )
    assert (CONTENT_TYPE, EVENT_CONTENT_TYPE.encode()) in last["headers"]


async def test_publish_retries_a_failed_delivery():
    kafka, producer, sleeps = publisher()
    producer.delivery_errors = [RequestTimedOutError()]

    await kafka.publish(completed())

    assert len(producer.sent) == 2
    assert sleeps.delays == [0.5]


async def test_publish_backs_off_up_to_ten_seconds_through_a_long_outage():
    kafka, producer, sleeps = publisher()
    producer.send_errors = [KafkaTimeoutError() for _ in range(7)]

    await kafka.publish(completed())

    assert sleeps.delays == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0]


async def test_enqueue_returns_before_the_delivery_settles():
    kafka, producer, _ = publisher()
    producer.hold = True

    delivery = await kafka.enqueue(completed())

    assert isinstance(delivery, asyncio.Future)
    assert not delivery.done()
    delivery.set_result(None)


async def test_an_event_too_large_for_its_topic_is_refused_before_sending():
    kafka, producer, sleeps = publisher()

    with pytest.raises(EventTooLargeError):
        await kafka.enqueue(oversized())
    # Never retried: no broker could ever take it.
    with pytest.raises(EventTooLargeError):
        await kafka.publish(oversized())

    assert producer.sent == []
    assert sleeps.delays == []
