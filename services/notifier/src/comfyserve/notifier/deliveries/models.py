"""Deliveries (one per event and target) and their attempts."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any
from uuid import UUID


class DeliveryStatus(StrEnum):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    DEAD = "dead"


@dataclass(frozen=True, slots=True)
class NewDelivery:
    """A delivery to record: `target_key` (the endpoint, or the job's own URL)
    with `event_id` makes it once-only."""

    id: str
    tenant_id: str
    job_id: str
    event_id: UUID
    event_type: str
    event_time: datetime
    endpoint_id: UUID | None
    target_key: str
    url: str
    payload: dict[str, Any]
    # The W3C `traceparent` its attempts continue (the job's trace).
    traceparent: str | None = None


@dataclass(frozen=True, slots=True)
class Attempt:
    number: int
    started_at: datetime
    status_code: int | None
    latency_ms: int
    response_excerpt: str
    error: str


@dataclass(frozen=True, slots=True)
class Delivery:
    id: str
    tenant_id: str
    job_id: str
    event_type: str
    event_time: datetime
    endpoint_id: UUID | None
    target_key: str
    url: str
    status: DeliveryStatus
    dead_reason: str
    attempt_count: int
    failures: int
    next_attempt_at: datetime | None
    created_at: datetime
    traceparent: str | None = None
    attempts: tuple[Attempt, ...] = ()


@dataclass(frozen=True, slots=True)
class Claimed:
    """A delivery this instance holds until `claimed_until` under `claim`."""

    delivery: Delivery
    claim: UUID


@dataclass(frozen=True, slots=True)
class Outcome:
    """How an attempt went, and what becomes of the delivery."""

    attempt: Attempt
    status: DeliveryStatus
    next_attempt_at: datetime | None
    dead_reason: str = ""
    # Counts towards the retry schedule (a replay starts it afresh).
    failed: bool = False


@dataclass(frozen=True, slots=True)
class DeliveryFilter:
    job_id: str = ""
    status: DeliveryStatus | None = None
    endpoint_id: UUID | None = None
