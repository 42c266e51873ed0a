import pytest

from comfyserve.contracts import topics
from comfyserve.contracts.events import (
    EVENT_CLASSES,
    Event,
    JobSubmitted,
    Priority,
    event_type_of,
)

from .conftest import make_submitted


def test_every_event_type_has_a_topic(any_event: Event) -> None:
    topic = topics.topic_for(any_event)

    assert topic in {spec.name for spec in topics.ALL_TOPICS}
    assert topic.endswith(".v1")


@pytest.mark.parametrize(
    ("priority", "topic"),
    [
        (Priority.HIGH, "workflow.jobs.submitted.high.v1"),
        (Priority.NORMAL, "workflow.jobs.submitted.normal.v1"),
        (Priority.LOW, "workflow.jobs.submitted.low.v1"),
    ],
)
def test_submitted_topic_follows_priority(priority: Priority, topic: str) -> None:
    assert topics.topic_for(make_submitted(priority)) == topic


def test_topic_map_covers_every_other_event_type() -> None:
    expected = {event_type_of(cls) for cls in EVENT_CLASSES if cls is not JobSubmitted}

    assert set(topics.TOPIC_FOR_EVENT_TYPE) == expected


@pytest.mark.parametrize(
    ("event_type", "topic"),
    [
        ("workflow.job.cancel-requested", "workflow.jobs.cancel-requested.v1"),
        ("executor.job.started", "executor.jobs.started.v1"),
        ("executor.job.progressed", "executor.jobs.progress.v1"),
        ("executor.job.completed", "executor.jobs.completed.v1"),
        ("executor.job.failed", "executor.jobs.failed.v1"),
        ("executor.job.cancelled", "executor.jobs.cancelled.v1"),
        ("executor.worker.heartbeat", "executor.workers.heartbeat.v1"),
        ("executor.nodes.catalog-published", "executor.nodes.catalog.v1"),
    ],
)
def test_topic_names(event_type: str, topic: str) -> None:
    assert topics.TOPIC_FOR_EVENT_TYPE[event_type] == topic


def test_drain_order_is_highest_first() -> None:
    assert topics.SUBMITTED_IN_DRAIN_ORDER == tuple(
        topics.SUBMITTED_BY_PRIORITY[p]
        for p in (Priority.HIGH, Priority.NORMAL, Priority.LOW)
    )
    assert set(topics.SUBMITTED_BY_PRIORITY) == set(Priority)


def test_job_event_topics() -> None:
    assert topics.JOB_EVENT_TOPICS == (
        topics.STARTED,
        topics.PROGRESS,
        topics.COMPLETED,
        topics.FAILED,
        topics.CANCELLED,
    )


def test_dlq() -> None:
    assert topics.dlq(topics.COMPLETED) == "executor.jobs.completed.v1.dlq"


def test_all_topics_specs() -> None:
    specs = {spec.name: spec for spec in topics.ALL_TOPICS}

    assert len(specs) == len(topics.ALL_TOPICS)
    assert all(specs[t].partitions == 6 for t in topics.SUBMITTED_IN_DRAIN_ORDER)
    assert all(specs[t].partitions == 6 for t in topics.JOB_EVENT_TOPICS)
    assert specs[topics.CANCEL_REQUESTED].partitions == 1
    assert specs[topics.HEARTBEAT].partitions == 3
    assert specs[topics.NODE_CATALOG].compacted
    assert specs[topics.NODE_CATALOG].partitions == 1
    assert [s.name for s in topics.ALL_TOPICS if s.compacted] == [topics.NODE_CATALOG]
    assert set(topics.TOPIC_FOR_EVENT_TYPE.values()) <= set(specs)
