"""Request and response bodies of the job routes."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, Field, HttpUrl, StringConstraints

from comfyserve.gateway.bodies import RequestBody

MAX_METADATA_KEYS = 16
MAX_METADATA_KEY_CHARS = 40
MAX_METADATA_VALUE_CHARS = 256
MAX_PAGE_SIZE = 100
MIN_TIMEOUT_MINUTES = 0.05
MAX_TIMEOUT_MINUTES = 60

MetadataKey = Annotated[
    str, StringConstraints(min_length=1, max_length=MAX_METADATA_KEY_CHARS)
]
MetadataValue = Annotated[str, StringConstraints(max_length=MAX_METADATA_VALUE_CHARS)]


class Priority(StrEnum):
    LOW = "low"
    NORMAL = "normal"
    HIGH = "high"


class JobStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


class OutputKind(StrEnum):
    IMAGE = "image"
    VIDEO = "video"
    AUDIO = "audio"
    TEXT = "text"
    FILE = "file"
    LATENT = "latent"


class ExecuteRequest(RequestBody):
    workflow: dict[str, Any] = Field(
        min_length=1,
        description=(
            "An API-format graph (node id → {class_type, inputs}) or the "
            '{"nodes": {...}} form.'
        ),
    )
    priority: Priority = Priority.NORMAL
    webhook_url: HttpUrl | None = Field(
        default=None, description="Called when the execution ends."
    )
    metadata: dict[MetadataKey, MetadataValue] = Field(
        default_factory=dict,
        max_length=MAX_METADATA_KEYS,
        description=(
            f"At most {MAX_METADATA_KEYS} entries; keys of 1 to "
            f"{MAX_METADATA_KEY_CHARS} characters, values of at most "
            f"{MAX_METADATA_VALUE_CHARS}. Returned with the execution."
        ),
    )
    # Fractions are allowed (0.5 = 30 s); the limit applies to one attempt.
    timeout_minutes: float = Field(
        default=10,
        ge=MIN_TIMEOUT_MINUTES,
        le=MAX_TIMEOUT_MINUTES,
        description="The limit of one attempt; fractions allowed (0.5 = 30 s).",
    )


class ValidateRequest(RequestBody):
    workflow: dict[str, Any] = Field(min_length=1)


class ValidationResult(BaseModel):
    valid: bool


class JobLinks(BaseModel):
    self: str
    events: str
    cancel: str


class JobAccepted(BaseModel):
    execution_id: str
    status: JobStatus
    created_at: datetime | None
    queue_position: int | None
    links: JobLinks


class Progress(BaseModel):
    node_id: str | None
    class_type: str | None
    step: int | None
    max: int | None
    fraction: float
    nodes_done: int
    nodes_total: int


class Output(BaseModel):
    file_id: str
    node_id: str
    filename: str
    content_type: str
    size: int
    width: int | None
    height: int | None
    kind: OutputKind | None
    # A short-lived presigned download URL; null when the file is gone.
    url: str | None
    url_expires_at: datetime | None


class JobError(BaseModel):
    code: str
    message: str
    node_id: str | None
    class_type: str | None


class JobSummary(BaseModel):
    execution_id: str
    status: JobStatus
    priority: Priority
    created_at: datetime | None
    started_at: datetime | None
    completed_at: datetime | None
    duration_seconds: float | None
    queue_position: int | None
    attempt: int
    cancel_requested: bool = Field(
        description=(
            "True once a cancel was accepted for the job while it ran: the job "
            "stays `running` until its worker stops it, then is `cancelled` "
            "(or ends as it would have, if it finished first)."
        )
    )
    error: JobError | None
    metadata: dict[str, str]
    links: JobLinks


class Job(JobSummary):
    progress: Progress | None
    outputs: list[Output]
    webhook_url: str | None
    timeout_minutes: float
    trace_id: str | None = Field(
        description="The W3C trace id of the job's trace (its submit and every "
        "attempt), as the trace store shows it; null when it was not traced."
    )


class JobPage(BaseModel):
    items: list[JobSummary]
    next_cursor: str | None


class StatusEvent(BaseModel):
    status: JobStatus
    queue_position: int | None
    error: JobError | None


class ProgressEvent(BaseModel):
    progress: Progress
