import pytest

from comfyserve.contracts import limits, topics
from comfyserve.contracts.events import JobCancelRequested, JobCancelRequestedData
from comfyserve.runtime.kafka import (
    BATCH_OVERHEAD_BYTES,
    FETCH_MAX_BYTES,
    PRODUCER_MAX_REQUEST_BYTES,
    EventTooLargeError,
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
