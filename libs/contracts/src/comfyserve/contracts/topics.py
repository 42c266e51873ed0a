"""Kafka topic names, versioned and named by their owning service.

Priorities use three `submitted` topics, one per priority, rather than one topic
with partitions per priority: an executor drains them in
`SUBMITTED_IN_DRAIN_ORDER`, pausing lower ones while a higher one has records,
and each keeps its own consumer lag, so queue depth per priority is a plain
Kafka metric and autoscaling can key on it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from comfyserve.contracts.events import Event, JobSubmitted, Priority

__all__ = [
    "ALL_TOPICS",
    "CANCELLED",
    "CANCEL_REQUESTED",
    "COMPLETED",
    "DLQ_SUFFIX",
    "FAILED",
    "HEARTBEAT",
    "JOB_EVENT_TOPICS",
    "NODE_CATALOG",
    "PROGRESS",
    "STARTED",
    "SUBMITTED_BY_PRIORITY",
    "SUBMITTED_HIGH",
    "SUBMITTED_IN_DRAIN_ORDER",
    "SUBMITTED_LOW",
    "SUBMITTED_NORMAL",
    "TOPIC_FOR_EVENT_TYPE",
    "TopicSpec",
    "dlq",
    "topic_for",
]

SUBMITTED_HIGH = "workflow.jobs.submitted.high.v1"
SUBMITTED_NORMAL = "workflow.jobs.submitted.normal.v1"
SUBMITTED_LOW = "workflow.jobs.submitted.low.v1"
CANCEL_REQUESTED = "workflow.jobs.cancel-requested.v1"

STARTED = "executor.jobs.started.v1"
PROGRESS = "executor.jobs.progress.v1"
COMPLETED = "executor.jobs.completed.v1"
FAILED = "executor.jobs.failed.v1"
CANCELLED = "executor.jobs.cancelled.v1"
HEARTBEAT = "executor.workers.heartbeat.v1"
NODE_CATALOG = "executor.nodes.catalog.v1"

DLQ_SUFFIX = ".dlq"

SUBMITTED_BY_PRIORITY: Mapping[Priority, str] = MappingProxyType(
    {
        Priority.HIGH: SUBMITTED_HIGH,
        Priority.NORMAL: SUBMITTED_NORMAL,
        Priority.LOW: SUBMITTED_LOW,
    }
)
SUBMITTED_IN_DRAIN_ORDER: tuple[str, ...] = (
    SUBMITTED_HIGH,
    SUBMITTED_NORMAL,
    SUBMITTED_LOW,
)

JOB_EVENT_TOPICS: tuple[str, ...] = (STARTED, PROGRESS, COMPLETED, FAILED, CANCELLED)

# `workflow.job.submitted` is absent: its topic depends on the priority, see
# `topic_for`.
TOPIC_FOR_EVENT_TYPE: Mapping[str, str] = MappingProxyType(
    {
        "workflow.job.cancel-requested": CANCEL_REQUESTED,
        "executor.job.started": STARTED,
        "executor.job.progressed": PROGRESS,
        "executor.job.completed": COMPLETED,
        "executor.job.failed": FAILED,
        "executor.job.cancelled": CANCELLED,
        "executor.worker.heartbeat": HEARTBEAT,
        "executor.nodes.catalog-published": NODE_CATALOG,
    }
)


def topic_for(event: Event) -> str:
    """The topic an event is published to."""
    if isinstance(event, JobSubmitted):
        return SUBMITTED_BY_PRIORITY[event.data.priority]
    try:
        return TOPIC_FOR_EVENT_TYPE[event.type]
    except KeyError:
        raise ValueError(f"no topic for event type {event.type!r}") from None


def dlq(topic: str) -> str:
    """The dead-letter topic for poison messages of `topic`."""
    return topic + DLQ_SUFFIX


@dataclass(frozen=True, slots=True)
class TopicSpec:
    """How a topic is created (local stack, tests, deployment)."""

    name: str
    partitions: int
    compacted: bool = False


ALL_TOPICS: tuple[TopicSpec, ...] = (
    *(TopicSpec(name, 6) for name in SUBMITTED_IN_DRAIN_ORDER),
    TopicSpec(CANCEL_REQUESTED, 1),
    *(TopicSpec(name, 6) for name in JOB_EVENT_TOPICS),
    TopicSpec(HEARTBEAT, 3),
    TopicSpec(NODE_CATALOG, 1, compacted=True),
)
"""Every topic of the product; DLQs are not listed, see `dlq`."""
