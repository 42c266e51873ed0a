"""Response bodies of the Comfy API v2 (API.md §A.4).

The official SDK validates these strictly: every key marked required-but-
nullable is always present (as null), datetimes carry a timezone and URLs are
absolute. Unknown extra keys are ignored by clients, so additions are safe.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import AwareDatetime, BaseModel, Field


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    CANCELING = "canceling"
    CANCELED = "canceled"
    FAILED = "failed"
    EXPIRED = "expired"


TERMINAL_STATUSES = frozenset(
    {JobStatus.SUCCEEDED, JobStatus.CANCELED, JobStatus.FAILED, JobStatus.EXPIRED}
)


class OutputType(StrEnum):
    IMAGE = "image"
    VIDEO = "video"
    AUDIO = "audio"
    TEXT = "text"
    FILE = "file"
    LATENT = "latent"


class Output(BaseModel):
    """A job's output; `id` is its storage file id, usable as an asset id."""

    node_id: str
    name: str
    type: OutputType
    content_type: str
    size_bytes: int
    id: str
    hash: str | None
    url: str
    url_expires_at: AwareDatetime
    job_id: str | None = None


class Progress(BaseModel):
    value: float = Field(ge=0, le=1)
    nodes_done: int
    nodes_total: int
    current_node: str | None = None
    current_node_class: str | None = None
    step: int | None = None
    steps: int | None = None
    message: str | None = None


class JobError(BaseModel):
    code: str
    message: str
    node_id: str | None = None
    class_type: str | None = None
    traceback: str | None = None


class JobUrls(BaseModel):
    self: str
    events: str
    cancel: str


class Job(BaseModel):
    id: str
    status: JobStatus
    created_at: AwareDatetime
    started_at: AwareDatetime | None
    completed_at: AwareDatetime | None
    expires_at: AwareDatetime
    queue_position: int | None
    progress: Progress | None
    outputs: list[Output]
    error: JobError | None
    urls: JobUrls
    metadata: dict[str, str] = Field(default_factory=dict)
    priority: int | None = None


class JobListItem(BaseModel):
    id: str
    status: JobStatus
    create_time: AwareDatetime
    update_time: AwareDatetime
    metadata: dict[str, str]


class JobPage(BaseModel):
    jobs: list[JobListItem]
    # Left out of the body on the last page: the SDK stops at an absent cursor.
    next_cursor: str | None = None


class JobWorkflow(BaseModel):
    workflow: dict[str, object]
    format: str = "api"


class PreviewFrame(BaseModel):
    """Data of an SSE `preview` frame: the job's latest preview image."""

    node_id: str
    content_type: str
    data_base64: str


class StatusFrame(BaseModel):
    """Data of an SSE `status` frame."""

    status: JobStatus
    queue_position: int | None = None


class Asset(BaseModel):
    id: str
    hash: str | None
    size_bytes: int
    content_type: str
    created_at: AwareDatetime
    url: str
    url_expires_at: AwareDatetime
    file_path: str | None = None
    created_new: bool | None = None
    expires_at: AwareDatetime | None = None
    job_id: str | None = None
