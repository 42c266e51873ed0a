"""Kafka event contracts shared by every service.

Each message is a CloudEvents-style envelope (`Event`) around one typed payload
model. Evolution is additive only: every new field gets a default, and
consumers ignore fields they do not know. Anything else is a new `v2` topic.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from enum import StrEnum
from functools import cache
from types import MappingProxyType
from typing import Annotated, Any, Literal, Self
from uuid import NAMESPACE_URL, UUID, uuid4, uuid5

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    model_validator,
)

from comfyserve.contracts.limits import (
    MAX_METADATA_KEY_CHARS,
    MAX_METADATA_KEYS,
    MAX_METADATA_VALUE_CHARS,
    REQUEST_ID_MAX_CHARS,
)

__all__ = [
    "DEFAULT_POOL",
    "DeliveryDead",
    "DeliveryDeadData",
    "EVENT_CLASSES",
    "TERMINAL_EVENT_TYPES",
    "AnyEvent",
    "Event",
    "FailureCode",
    "GpuInfo",
    "InputFile",
    "JobFinished",
    "JobFinishedData",
    "FinalStatus",
    "JobCancelRequested",
    "JobCancelRequestedData",
    "JobCancelled",
    "JobCancelledData",
    "JobCompleted",
    "JobCompletedData",
    "JobEvent",
    "JobFailed",
    "JobFailedData",
    "JobProgressData",
    "JobProgressed",
    "JobRejected",
    "JobRejectedData",
    "JobStarted",
    "JobStartedData",
    "JobSubmitted",
    "JobSubmittedData",
    "NodeCatalogData",
    "NodeCatalogPublished",
    "OutputFile",
    "OutputKind",
    "Payload",
    "Priority",
    "RejectionCode",
    "SubmitRequested",
    "SubmitRequestedData",
    "WorkerHeartbeat",
    "WorkerHeartbeatData",
    "dump_event",
    "event_classes_by_type",
    "event_type_of",
    "parse_event",
    "parse_job_event",
    "submitted_job_id",
]


class Priority(StrEnum):
    HIGH = "high"
    NORMAL = "normal"
    LOW = "low"


class OutputKind(StrEnum):
    IMAGE = "image"
    VIDEO = "video"
    AUDIO = "audio"
    TEXT = "text"
    FILE = "file"
    LATENT = "latent"


class FailureCode(StrEnum):
    NODE_EXECUTION_ERROR = "node_execution_error"
    INVALID_WORKFLOW = "invalid_workflow"
    TIMEOUT = "timeout"
    ENGINE_CRASHED = "engine_crashed"
    WORKER_LOST = "worker_lost"
    STORAGE_ERROR = "storage_error"
    INPUT_UNAVAILABLE = "input_unavailable"
    INTERNAL_ERROR = "internal_error"
    OUTPUT_LIMIT_EXCEEDED = "output_limit_exceeded"


class FinalStatus(StrEnum):
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


class RejectionCode(StrEnum):
    """Why a `submit-requested` command did not become a job."""

    UNAUTHENTICATED = "unauthenticated"
    FORBIDDEN = "forbidden"
    INVALID_COMMAND = "invalid_command"
    INVALID_ARGUMENT = "invalid_argument"
    INVALID_WORKFLOW = "invalid_workflow"
    QUEUE_FULL = "queue_full"
    IDEMPOTENCY_KEY_REUSE = "idempotency_key_reuse"
    JOB_ID_TAKEN = "job_id_taken"


DEFAULT_POOL = "default"


def _now() -> datetime:
    return datetime.now(UTC)


class Payload(BaseModel):
    """Base of every event payload: frozen, and tolerant of unknown fields."""

    model_config = ConfigDict(extra="ignore", frozen=True)


class InputFile(Payload):
    """An input file of a job, already in the object store, staged by the executor."""

    file_id: str
    node_id: str
    input_name: str
    filename: str
    bucket: str
    key: str
    content_type: str
    size: int = Field(ge=0)
    sha256: str | None = None


class OutputFile(Payload):
    """An output the executor has stored in the object store."""

    file_id: str
    node_id: str
    index: int = Field(ge=0, description="Position within the node's outputs.")
    filename: str
    kind: OutputKind
    content_type: str
    size: int = Field(ge=0)
    sha256: str | None = None
    bucket: str
    key: str
    width: int | None = None
    height: int | None = None


class GpuInfo(Payload):
    """One GPU of a worker; memory in bytes."""

    index: int = Field(ge=0)
    name: str
    vram_total: int = Field(ge=0)
    vram_free: int = Field(ge=0)


class JobSubmittedData(Payload):
    """A job waiting for its next attempt. The graph is not carried: the
    executor that claims the job gets it, with its inputs, from the claim."""

    pool: str = Field(
        description="The executor pool (image) whose node catalog runs the job."
    )
    priority: Priority
    attempt: int = Field(ge=1, description="The attempt the next claim starts.")
    timeout_seconds: int = Field(gt=0)
    deadline: AwareDatetime


class JobFinishedData(Payload):
    """How a job ended, as the workflow service decided it."""

    status: FinalStatus
    attempt: int = Field(
        ge=0, description="The attempt that ended it; 0 when it never started."
    )
    output_file_ids: list[str] = Field(
        default_factory=list,
        description="The job's outputs: those of `attempt`, the only one that "
        "owns outputs.",
    )
    error_code: str | None = None
    webhook_url: str | None = None


class JobCancelRequestedData(Payload):
    """Why the job's cancellation was requested."""

    reason: str


class JobStartedData(Payload):
    """Which worker started which attempt of the job."""

    attempt: int = Field(ge=1)
    worker_id: str
    prompt_id: str | None = None


class JobProgressData(Payload):
    """Where a running job is."""

    attempt: int = Field(ge=1)
    worker_id: str
    node_id: str | None = None
    class_type: str | None = None
    step: int | None = None
    max: int | None = None
    fraction: float = Field(ge=0.0, le=1.0, description="Overall job progress.")
    nodes_done: int = Field(ge=0)
    nodes_total: int = Field(ge=0)
    outputs: list[OutputFile] = Field(
        default_factory=list,
        description=(
            "Outputs stored since the previous progress event. Events that "
            "carry outputs are never throttled away."
        ),
    )
    preview_file_id: str | None = None


class JobCompletedData(Payload):
    """The outcome of a successful attempt."""

    attempt: int = Field(ge=1)
    worker_id: str
    outputs: list[OutputFile]
    duration_ms: int = Field(ge=0)


class JobFailedData(Payload):
    """Why an attempt failed, and whether another attempt may help."""

    attempt: int = Field(ge=1)
    worker_id: str | None = None
    code: FailureCode
    message: str
    node_id: str | None = None
    class_type: str | None = None
    traceback: str | None = None
    retryable: bool


class JobCancelledData(Payload):
    """How a job ended by cancellation; attempt and worker unset if never started."""

    attempt: int | None = None
    worker_id: str | None = None
    reason: str


class WorkerHeartbeatData(Payload):
    """A worker's liveness, GPUs and current job."""

    worker_id: str
    pool: str = DEFAULT_POOL
    current_job_id: str | None = None
    gpus: list[GpuInfo] = Field(default_factory=list)
    loaded_models: list[str] = Field(default_factory=list)
    engine_version: str | None = None
    interval_s: float = Field(gt=0)


class NodeCatalogData(Payload):
    """The node types and models a worker's engine offers."""

    worker_id: str
    pool: str = Field(
        default=DEFAULT_POOL,
        description="The pool the worker belongs to; the catalog stands for it.",
    )
    catalog_hash: str
    object_info: dict[str, Any] = Field(description="ComfyUI's /object_info.")
    models: dict[str, list[str]] = Field(
        default_factory=dict, description="Model filenames per model folder."
    )


MetadataKey = Annotated[
    str, StringConstraints(min_length=1, max_length=MAX_METADATA_KEY_CHARS)
]
MetadataValue = Annotated[str, StringConstraints(max_length=MAX_METADATA_VALUE_CHARS)]
RequestId = Annotated[
    str, StringConstraints(min_length=1, max_length=REQUEST_ID_MAX_CHARS)
]


class SubmitRequestedData(Payload):
    """A job an internal team asks for: the fields of the REST submit."""

    request_id: RequestId = Field(
        description="The producer's id of this request, unique per tenant: a "
        "repeat is the same job. Also the envelope's subject and the Kafka key."
    )
    workflow: dict[str, Any] = Field(
        min_length=1,
        description="An API-format graph (node id -> {class_type, inputs}) or "
        'the {"nodes": {...}} form.',
    )
    priority: Priority = Priority.NORMAL
    webhook_url: str | None = Field(
        default=None, description="Called when the job ends."
    )
    metadata: dict[MetadataKey, MetadataValue] = Field(
        default_factory=dict, max_length=MAX_METADATA_KEYS
    )
    timeout_seconds: int = Field(
        default=0, ge=0, description="The limit of one attempt; 0: the default."
    )
    job_id: UUID | None = Field(
        default=None,
        description="The job's id; unset, it is `submitted_job_id(tenant, "
        "request_id)`, so the producer knows it before the job exists.",
    )


class JobRejectedData(Payload):
    """Why a `submit-requested` command was refused; `error` and
    `node_errors` are ComfyUI's /prompt error shape when the graph is at fault."""

    request_id: str
    code: RejectionCode
    message: str
    field: str | None = Field(
        default=None, description="The command field to fix, where one is at fault."
    )
    error: dict[str, Any] | None = None
    node_errors: dict[str, Any] = Field(default_factory=dict)


class DeliveryDeadData(Payload):
    """A webhook delivery the notifier gave up on, and where it was going."""

    delivery_id: str = Field(description="Its `webhook-id`.")
    event_type: str = Field(description="The webhook event type (`job.completed`).")
    job_id: str | None = None
    endpoint_id: str | None = None
    url: str
    attempts: int = Field(ge=0)
    reason: str


class Event(BaseModel):
    """CloudEvents-style envelope; subclasses fix `type` and `data`."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    id: UUID = Field(default_factory=uuid4, description="Consumers de-dup on it.")
    type: str
    source: str = Field(min_length=1, description="Producing service/instance.")
    time: AwareDatetime = Field(default_factory=_now)
    subject: str = Field(
        min_length=1,
        description=(
            "Job id (worker id for heartbeats, pool for catalogs); also the Kafka key."
        ),
    )
    tenant_id: str | None = None
    data: Payload


class JobSubmitted(Event):
    """Emitted by the workflow service (via its outbox) once a job is accepted,
    and again with `attempt + 1` when a job is re-queued. Version 2: executors
    are dispatched by claim, so the graph no longer rides on the event."""

    type: Literal["workflow.job.submitted.v2"] = "workflow.job.submitted.v2"
    data: JobSubmittedData


class JobFinished(Event):
    """Emitted by the workflow service (via its outbox) in the transaction that
    gives a job its final state, whatever ended it: an executor's event, a
    cancel, the sweeper. Exactly once per job."""

    type: Literal["workflow.job.finished"] = "workflow.job.finished"
    data: JobFinishedData


class JobCancelRequested(Event):
    """Emitted by the workflow service when a client cancels a job that may be
    running; broadcast to every executor, only the one running it acts."""

    type: Literal["workflow.job.cancel-requested"] = "workflow.job.cancel-requested"
    data: JobCancelRequestedData


class SubmitRequested(Event):
    """A command, produced by an internal team's service to ask the workflow
    service for a job, with a credential in its `authorization` header. The
    job then appears on the job topics like any other; a refusal is a
    `JobRejected`."""

    type: Literal["workflow.job.submit-requested"] = "workflow.job.submit-requested"
    data: SubmitRequestedData

    @model_validator(mode="after")
    def _keyed_by_request(self) -> Self:
        if self.subject != self.data.request_id:
            raise ValueError("subject must be the request id")
        return self


class JobRejected(Event):
    """Emitted by the workflow service for a `submit-requested` command it did
    not accept (credential, validation, quota); subject is the request id."""

    type: Literal["workflow.job.rejected"] = "workflow.job.rejected"
    data: JobRejectedData


class JobStarted(Event):
    """Emitted by an executor when it takes a job, before staging inputs, once
    per attempt."""

    type: Literal["executor.job.started"] = "executor.job.started"
    data: JobStartedData


class JobProgressed(Event):
    """Emitted by an executor while a job runs, throttled; never throttled away
    when it carries newly stored outputs."""

    type: Literal["executor.job.progressed"] = "executor.job.progressed"
    data: JobProgressData


class JobCompleted(Event):
    """Emitted by an executor after every output of the job is stored."""

    type: Literal["executor.job.completed"] = "executor.job.completed"
    data: JobCompletedData


class JobFailed(Event):
    """Emitted by an executor when an attempt fails; `retryable` says whether
    the workflow service may re-queue it."""

    type: Literal["executor.job.failed"] = "executor.job.failed"
    data: JobFailedData


class JobCancelled(Event):
    """Emitted by the executor that interrupted a running job after a cancel
    request, or that skipped a job already cancelled."""

    type: Literal["executor.job.cancelled"] = "executor.job.cancelled"
    data: JobCancelledData


class WorkerHeartbeat(Event):
    """Emitted by every executor each `interval_s` seconds; subject is the
    worker id."""

    type: Literal["executor.worker.heartbeat"] = "executor.worker.heartbeat"
    data: WorkerHeartbeatData


class NodeCatalogPublished(Event):
    """Emitted by an executor at start-up and whenever its engine's node
    catalog changes; subject (the compaction key) is the pool, so the topic
    keeps one catalog per pool."""

    type: Literal["executor.nodes.catalog-published"] = (
        "executor.nodes.catalog-published"
    )
    data: NodeCatalogData


class DeliveryDead(Event):
    """Emitted by the notifier when a delivery will not be attempted again:
    retries ran out, the receiver refused it or went away; subject is the
    delivery id. A replay may still send it."""

    type: Literal["notifier.delivery.dead"] = "notifier.delivery.dead"
    data: DeliveryDeadData


AnyEvent = Annotated[
    JobSubmitted
    | JobFinished
    | JobCancelRequested
    | SubmitRequested
    | JobRejected
    | JobStarted
    | JobProgressed
    | JobCompleted
    | JobFailed
    | JobCancelled
    | WorkerHeartbeat
    | NodeCatalogPublished
    | DeliveryDead,
    Field(discriminator="type"),
]

JobEvent = Annotated[
    JobStarted | JobProgressed | JobCompleted | JobFailed | JobCancelled,
    Field(discriminator="type"),
]

EVENT_CLASSES: tuple[type[Event], ...] = (
    JobSubmitted,
    JobFinished,
    JobCancelRequested,
    SubmitRequested,
    JobRejected,
    JobStarted,
    JobProgressed,
    JobCompleted,
    JobFailed,
    JobCancelled,
    WorkerHeartbeat,
    NodeCatalogPublished,
    DeliveryDead,
)

TERMINAL_EVENT_TYPES: frozenset[str] = frozenset(
    {"executor.job.completed", "executor.job.failed", "executor.job.cancelled"}
)
"""Event types that end an attempt; `failed` ends the job unless it is retried."""


_JOB_ID_NAMESPACE = uuid5(NAMESPACE_URL, "https://comfyserve/jobs/submit-requested")


def submitted_job_id(tenant_id: str, request_id: str) -> UUID:
    """The job id of a `submit-requested` command that names none: the same
    for every repeat of the request, and different for every tenant."""
    return uuid5(_JOB_ID_NAMESPACE, f"{tenant_id}/{request_id}")


def event_type_of(cls: type[Event]) -> str:
    """The `type` string a concrete event class carries."""
    default = cls.model_fields["type"].default
    if not isinstance(default, str):
        raise TypeError(f"{cls.__name__} does not fix its event type")
    return default


def event_classes_by_type() -> Mapping[str, type[Event]]:
    return MappingProxyType({event_type_of(cls): cls for cls in EVENT_CLASSES})


# Built on first use rather than at import time.
@cache
def _any_event_adapter() -> TypeAdapter[AnyEvent]:
    return TypeAdapter(AnyEvent)


@cache
def _job_event_adapter() -> TypeAdapter[JobEvent]:
    return TypeAdapter(JobEvent)


def parse_event(raw: bytes | str) -> AnyEvent:
    """Decode any event from JSON; raises `pydantic.ValidationError`."""
    return _any_event_adapter().validate_json(raw)


def parse_job_event(raw: bytes | str) -> JobEvent:
    """Decode an executor job event from JSON; raises `pydantic.ValidationError`."""
    return _job_event_adapter().validate_json(raw)


def dump_event(event: Event) -> bytes:
    """Encode an event as UTF-8 JSON, the Kafka message value."""
    return event.model_dump_json().encode()
