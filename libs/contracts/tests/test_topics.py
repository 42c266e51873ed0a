import pytest

from comfyserve.contracts import limits, topics
from comfyserve.contracts.events import (
    EVENT_CLASSES,
    Event,
    Priority,
    event_type_of,
)

from .conftest import make_submitted


def test_every_event_type_has_a_topic(any_event: Event) -> None:
    topic = topics.topic_for(any_event)

    assert topic in {spec.name for spec in topics.ALL_TOPICS}
    assert topic.endswith((".v1", ".v2"))


def test_submitted_is_one_topic_for_every_priority() -> None:
    assert {topics.topic_for(make_submitted(p)) for p in Priority} == {
        "workflow.jobs.submitted.v2"
    }


def test_topic_map_covers_every_event_type() -> None:
    expected = {event_type_of(cls) for cls in EVENT_CLASSES}

    assert set(topics.TOPIC_FOR_EVENT_TYPE) == expected


@pytest.mark.parametrize(
    ("event_type", "topic"),
    [
        ("workflow.job.submitted.v2", "workflow.jobs.submitted.v2"),
        ("workflow.job.finished", "workflow.jobs.finished.v1"),
        ("workflow.job.cancel-requested", "workflow.jobs.cancel-requested.v1"),
        ("workflow.job.submit-requested", "workflow.jobs.submit-requested.v1"),
        ("workflow.job.rejected", "workflow.jobs.rejected.v1"),
        ("executor.job.started", "executor.jobs.started.v1"),
        ("executor.job.progressed", "executor.jobs.progress.v1"),
        ("executor.job.completed", "executor.jobs.completed.v1"),
        ("executor.job.failed", "executor.jobs.failed.v1"),
        ("executor.job.cancelled", "executor.jobs.cancelled.v1"),
        ("executor.worker.heartbeat", "executor.workers.heartbeat.v1"),
        ("executor.nodes.catalog-published", "executor.nodes.catalog.v1"),
        ("notifier.delivery.dead", "notifier.deliveries.dead.v1"),
    ],
)
def test_topic_names(event_type: str, topic: str) -> None:
    assert topics.TOPIC_FOR_EVENT_TYPE[event_type] == topic


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
    assert specs[topics.SUBMITTED].partitions == 6
    assert specs[topics.FINISHED].partitions == 6
    assert all(specs[t].partitions == 6 for t in topics.JOB_EVENT_TOPICS)
    assert specs[topics.CANCEL_REQUESTED].partitions == 1
    assert specs[topics.HEARTBEAT].partitions == 3
    assert specs[topics.NODE_CATALOG].compacted
    assert specs[topics.NODE_CATALOG].partitions == 1
    assert [s.name for s in topics.ALL_TOPICS if s.compacted] == [topics.NODE_CATALOG]
    assert set(topics.TOPIC_FOR_EVENT_TYPE.values()) <= set(specs)


def test_size_limits_follow_the_topic() -> None:
    assert topics.max_message_bytes(topics.COMPLETED) == limits.EVENT_MAX_BYTES
    assert topics.max_message_bytes(topics.NODE_CATALOG) == limits.CATALOG_MAX_BYTES
    assert topics.max_message_bytes(topics.dlq(topics.NODE_CATALOG)) == (
        limits.CATALOG_MAX_BYTES
    )
    assert topics.max_message_bytes("unknown.topic") == limits.EVENT_MAX_BYTES


def test_a_submit_command_fits_the_largest_graph() -> None:
    assert topics.max_message_bytes(topics.SUBMIT_REQUESTED) > limits.MAX_WORKFLOW_BYTES
    assert topics.max_message_bytes(topics.dlq(topics.SUBMIT_REQUESTED)) == (
        topics.max_message_bytes(topics.SUBMIT_REQUESTED)
    )
