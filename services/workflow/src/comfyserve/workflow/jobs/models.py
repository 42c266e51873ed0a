"""The job record, its event log and idempotency keys.

The DDL (indexes included) lives in the Alembic migrations; these tables, the
column sets and status conditions below, and `job_from_row` are what the
repositories (`repository`, `dispatch_repository`, `queue_repository`) share.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any
from uuid import UUID

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Computed,
    DateTime,
    Double,
    FetchedValue,
    Integer,
    Row,
    SmallInteger,
    Table,
    Text,
    Uuid,
    literal_column,
)
from sqlalchemy.dialects.postgresql import JSONB

from comfyserve.contracts.events import DEFAULT_POOL, Priority
from comfyserve.workflow.db import metadata

__all__ = [
    "FINAL_STATUSES",
    "IS_PENDING",
    "IS_RUNNING",
    "JOB_COLUMNS",
    "PRIORITY_RANK",
    "SUMMARY_COLUMNS",
    "FileInputRef",
    "JobRecord",
    "JobOrder",
    "JobStatus",
    "idempotency_keys",
    "job_events",
    "job_from_row",
    "job_from_values",
    "jobs",
    "queue_depth",
]


class JobStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_final(self) -> bool:
        return self in FINAL_STATUSES


class JobOrder(StrEnum):
    """How a listing is ordered; every order but NEWEST (paged by cursor)
    pages by offset."""

    NEWEST = "newest"
    OLDEST_FIRST = "oldest_first"
    NEWEST_FIRST = "newest_first"
    LONGEST_FIRST = "longest_first"
    SHORTEST_FIRST = "shortest_first"


FINAL_STATUSES = frozenset({JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED})

PRIORITY_RANK: dict[Priority, int] = {
    Priority.HIGH: 0,
    Priority.NORMAL: 1,
    Priority.LOW: 2,
}

jobs = Table(
    "jobs",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("tenant_id", Text, nullable=False),
    Column("status", Text, nullable=False),
    Column("priority", Text, nullable=False),
    Column(
        "priority_rank",
        SmallInteger,
        Computed(
            "CASE priority WHEN 'high' THEN 0 WHEN 'normal' THEN 1 ELSE 2 END",
            persisted=True,
        ),
    ),
    Column("workflow", JSONB, nullable=False),
    Column("inputs", JSONB, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("started_at", DateTime(timezone=True)),
    Column("completed_at", DateTime(timezone=True)),
    Column("deadline", DateTime(timezone=True), nullable=False),
    Column("timeout_seconds", Integer, nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("worker_id", Text),
    Column("progress", JSONB),
    Column("outputs", JSONB, nullable=False),
    Column("error", JSONB),
    Column("metadata", JSONB, nullable=False),
    Column("webhook_url", Text),
    Column("cancel_requested", Boolean, nullable=False),
    Column("idempotency_key", Text),
    Column("duration_seconds", Double),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("pool", Text, nullable=False),
    Column("lease_expires_at", DateTime(timezone=True)),
    Column("file_inputs", JSONB, nullable=False),
    # From a sequence at insert (migration 0004): the order of acceptance.
    Column("number", BigInteger, nullable=False, server_default=FetchedValue()),
    Column("client_id", Text),
    # Migration 0005: the submit's trace, which later attempts join.
    Column("trace_id", Text),
    Column("traceparent", Text),
)

JOB_COLUMNS = [column for column in jobs.c if column.name != "priority_rank"]
# What a listing or a watch reads: everything but the graph and its inputs,
# which can run to megabytes.
SUMMARY_COLUMNS = [
    column
    for column in JOB_COLUMNS
    if column.name not in ("workflow", "inputs", "file_inputs")
]
# Literals, as the partial indexes have them: with a bound parameter Postgres
# cannot match the index once it switches to a generic plan.
IS_PENDING = jobs.c.status == literal_column("'pending'")
IS_RUNNING = jobs.c.status == literal_column("'running'")

queue_depth = Table(
    "queue_depth",
    metadata,
    Column("pool", Text, primary_key=True),
    Column("priority_rank", SmallInteger, primary_key=True),
    Column("shard", SmallInteger, primary_key=True),
    Column("pending", BigInteger, nullable=False),
)

job_events = Table(
    "job_events",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("job_id", Uuid, nullable=False),
    Column("type", Text, nullable=False),
    Column("time", DateTime(timezone=True), nullable=False),
    Column("payload", JSONB, nullable=False),
)

idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    Column("tenant_id", Text, primary_key=True),
    Column("key", Text, primary_key=True),
    Column("request_hash", Text, nullable=False),
    Column("job_id", Uuid, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)


@dataclass(frozen=True, slots=True)
class FileInputRef:
    """A node input that names an input file; the executor resolves it inside
    the job's own input folder."""

    node_id: str
    input_name: str


@dataclass(frozen=True, slots=True)
class JobRecord:
    """One row of `jobs`, as the service reads it.

    A job read for a listing or a watch leaves `workflow`, `inputs` and
    `file_inputs` empty: they can run to megabytes and those readers do not
    need them.
    """

    id: UUID
    tenant_id: str
    status: JobStatus
    priority: Priority
    created_at: datetime
    deadline: datetime
    timeout_seconds: int
    attempt: int
    updated_at: datetime
    workflow: dict[str, Any] = field(default_factory=dict)
    inputs: list[dict[str, Any]] = field(default_factory=list)
    file_inputs: list[dict[str, str]] = field(default_factory=list)
    pool: str = DEFAULT_POOL
    started_at: datetime | None = None
    completed_at: datetime | None = None
    worker_id: str | None = None
    lease_expires_at: datetime | None = None
    progress: dict[str, Any] | None = None
    outputs: list[dict[str, Any]] = field(default_factory=list)
    error: dict[str, Any] | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    webhook_url: str | None = None
    cancel_requested: bool = False
    idempotency_key: str | None = None
    duration_seconds: float | None = None
    queue_position: int | None = None
    client_id: str | None = None
    # None until the row is inserted, which numbers it.
    number: int | None = None
    trace_id: str | None = None
    traceparent: str | None = None


def job_from_row(row: Row[Any]) -> JobRecord:
    return job_from_values(dict(row._mapping))


def job_from_values(values: dict[str, Any]) -> JobRecord:
    """A job from its row's columns (taken from `values`, which it changes)."""
    values.pop("priority_rank", None)
    values["status"] = JobStatus(values["status"])
    values["priority"] = Priority(values["priority"])
    return JobRecord(**values)
