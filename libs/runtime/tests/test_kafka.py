import asyncio

import pytest
from aiokafka.errors import (  # type: ignore[import-untyped]
    KafkaConnectionError,
    KafkaTimeoutError,
    OutOfOrderSequenceNumber,
    ProducerFenced,
)

from comfyserve.contracts import limits, topics
from comfyserve.contracts.events import JobCancelRequested, JobCancelRequestedData
from comfyserve.runtime.kafka import (
    BATCH_OVERHEAD_BYTES,
    FETCH_MAX_BYTES,
    PRODUCER_MAX_REQUEST_BYTES,
    EventTooLargeError,
    RenewingProducer,
    check_size,
    encode_event,
    topic_config,
)


def test_a_record_at_the_limit_fits_and_one_byte_more_does_not() -> None:
    limit = limits.EVENT_MAX_BYTES
    check_size(topics.COMPLETED, b"x" * (limit - 3), b"key")

    with pytest.raises(EventTooLargeError) as raised:
        check_size(topics.COMPLETED, b"x" * (limit - 2), b"key")

    assert raised.value.limit == limit
    assert raised.value.topic == topics.COMPLETED


def test_the_catalog_topic_takes_larger_records() -> None:
    check_size(topics.NODE_CATALOG, b"x" * (limits.EVENT_MAX_BYTES * 4))


def test_an_event_too_large_for_its_topic_is_refused_before_sending() -> None:
    event = JobCancelRequested(
        source="s",
        subject="job",
        data=JobCancelRequestedData(reason="x" * limits.EVENT_MAX_BYTES),
    )

    with pytest.raises(EventTooLargeError):
        encode_event(event)


def test_producers_topics_and_consumers_agree() -> None:
    largest = max(spec.max_message_bytes for spec in topics.ALL_TOPICS)
    for spec in topics.ALL_TOPICS:
        broker_limit = int(topic_config(spec)["max.message.bytes"])
        assert broker_limit == spec.max_message_bytes + BATCH_OVERHEAD_BYTES
        assert broker_limit <= PRODUCER_MAX_REQUEST_BYTES <= FETCH_MAX_BYTES
    assert PRODUCER_MAX_REQUEST_BYTES == largest + BATCH_OVERHEAD_BYTES
    compacted = topic_config(
        next(s for s in topics.ALL_TOPICS if s.name == topics.NODE_CATALOG)
    )
    assert compacted["cleanup.policy"] == "compact"


class _FakeProducer:
    """Stands in for `AIOKafkaProducer`: delivers, or fails every delivery
    with `error` once its state is lost."""

    def __init__(self, error: Exception | None) -> None:
        self.error = error
        self.sent: list[bytes | None] = []
        self.started = self.stopped = False

    async def start(self) -> None:
        self.started = True

    async def stop(self) -> None:
        self.stopped = True

    async def send(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> asyncio.Future[object]:
        delivery: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        if self.error is None:
            self.sent.append(value)
            delivery.set_result(None)
        else:
            delivery.set_exception(self.error)
        return delivery


async def test_a_producer_that_lost_its_state_is_replaced_for_the_next_send() -> None:
    made = [_FakeProducer(OutOfOrderSequenceNumber()), _FakeProducer(None)]
    producer = RenewingProducer(lambda: made.pop(0))
    await producer.start()
    first = producer._producer

    with pytest.raises(OutOfOrderSequenceNumber):
        await (await producer.send("t", value=b"lost"))
    await (await producer.send("t", value=b"kept"))

    assert first.stopped
    assert producer._producer.started
    assert producer._producer.sent == [b"kept"]


async def test_other_kafka_errors_keep_the_producer() -> None:
    failing = _FakeProducer(KafkaTimeoutError())
    producer = RenewingProducer(lambda: failing)
    await producer.start()

    with pytest.raises(KafkaTimeoutError):
        await (await producer.send("t", value=b"x"))

    assert producer._producer is failing
    assert not failing.stopped


async def test_a_renewal_the_broker_refuses_is_tried_again_on_the_next_send() -> None:
    class _Unstartable(_FakeProducer):
        async def start(self) -> None:
            raise KafkaConnectionError()

    lost = _FakeProducer(ProducerFenced())
    made: list[_FakeProducer] = [lost, _Unstartable(None), _FakeProducer(None)]
    producer = RenewingProducer(lambda: made.pop(0))
    await producer.start()

    for _ in range(2):
        with pytest.raises(ProducerFenced):
            await (await producer.send("t", value=b"x"))

    assert producer._producer is not lost
    assert lost.stopped
