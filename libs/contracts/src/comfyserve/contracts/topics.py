"""Kafka topic names, versioned and named by their owning service.

Executors are dispatched by claim (`WorkflowService.AcquireJob`), not by
consuming `submitted`: the topic records each acceptance and re-queue for any
consumer, and one topic serves every priority because priority decides the
order of claims, not of records. Version 1 (three priority topics carrying the
graph) is retired; see docs/adr/0003-dispatch-by-claim.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from comfyserve.contracts.events import Event
from comfyserve.contracts.limits import (
    CATALOG_MAX_BYTES,
    EVENT_MAX_BYTES,
    SUBMIT_MAX_BYTES,
)

__all__ = [
    "ALL_TOPICS",
    "CANCELLED",
    "CANCEL_REQUESTED",
    "COMPLETED",
    "DELIVERIES_DEAD",
    "DLQ_SUFFIX",
    "FAILED",
    "FINISHED",
    "HEARTBEAT",
    "JOB_EVENT_TOPICS",
    "NODE_CATALOG",
    "PROGRESS",
    "REJECTED",
    "STARTED",
    "SUBMITTED",
    "SUBMIT_REQUESTED",
    "TOPIC_FOR_EVENT_TYPE",
    "TopicSpec",
    "dlq",
    "max_message_bytes",
    "topic_for",
]

SUBMITTED = "workflow.jobs.submitted.v2"
FINISHED = "workflow.jobs.finished.v1"
CANCEL_REQUESTED = "workflow.jobs.cancel-requested.v1"
# Internal teams' way in: commands keyed by request id, and their refusals.
SUBMIT_REQUESTED = "workflow.jobs.submit-requested.v1"
REJECTED = "workflow.jobs.rejected.v1"

STARTED = "executor.jobs.started.v1"
PROGRESS = "executor.jobs.progress.v1"
COMPLETED = "executor.jobs.completed.v1"
FAILED = "executor.jobs.failed.v1"
CANCELLED = "executor.jobs.cancelled.v1"
HEARTBEAT = "executor.workers.heartbeat.v1"
NODE_CATALOG = "executor.nodes.catalog.v1"

# Webhook deliveries the notifier gave up on: the dead letters of webhooks.
DELIVERIES_DEAD = "notifier.deliveries.dead.v1"

DLQ_SUFFIX = ".dlq"

JOB_EVENT_TOPICS: tuple[str, ...] = (STARTED, PROGRESS, COMPLETED, FAILED, CANCELLED)

TOPIC_FOR_EVENT_TYPE: Mapping[str, str] = MappingProxyType(
    {
        "workflow.job.submitted.v2": SUBMITTED,
        "workflow.job.finished": FINISHED,
        "workflow.job.cancel-requested": CANCEL_REQUESTED,
        "workflow.job.submit-requested": SUBMIT_REQUESTED,
        "workflow.job.rejected": REJECTED,
        "executor.job.started": STARTED,
        "executor.job.progressed": PROGRESS,
        "executor.job.completed": COMPLETED,
        "executor.job.failed": FAILED,
        "executor.job.cancelled": CANCELLED,
        "executor.worker.heartbeat": HEARTBEAT,
        "executor.nodes.catalog-published": NODE_CATALOG,
        "notifier.delivery.dead": DELIVERIES_DEAD,
    }
)


def topic_for(event: Event) -> str:
    """The topic an event is published to."""
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
    max_message_bytes: int = EVENT_MAX_BYTES


ALL_TOPICS: tuple[TopicSpec, ...] = (
    TopicSpec(SUBMITTED, 6),
    TopicSpec(FINISHED, 6),
    TopicSpec(CANCEL_REQUESTED, 1),
    # A command carries a whole graph, as a job may.
    TopicSpec(SUBMIT_REQUESTED, 6, max_message_bytes=SUBMIT_MAX_BYTES),
    TopicSpec(REJECTED, 6),
    *(TopicSpec(name, 6) for name in JOB_EVENT_TOPICS),
    TopicSpec(HEARTBEAT, 3),
    TopicSpec(NODE_CATALOG, 1, compacted=True, max_message_bytes=CATALOG_MAX_BYTES),
    TopicSpec(DELIVERIES_DEAD, 3),
)
"""Every topic of the product; a DLQ takes its topic's `max_message_bytes`."""

_LIMITS: Mapping[str, int] = MappingProxyType(
    {spec.name: spec.max_message_bytes for spec in ALL_TOPICS}
)


def max_message_bytes(topic: str) -> int:
    """The largest record `topic` (or its DLQ) accepts."""
    base = topic.removesuffix(DLQ_SUFFIX)
    return _LIMITS.get(base, EVENT_MAX_BYTES)
