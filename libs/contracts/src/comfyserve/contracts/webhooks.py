"""What a webhook receiver gets: the body of every delivery the notifier sends.

The body is the job as `GET /workflows/{id}` shows it, with fresh download
URLs for its outputs, under the webhook's `type` and `timestamp`. Its JSON
Schema is committed in `schemas/webhooks/` and only ever extended.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

__all__ = [
    "DEFAULT_WEBHOOK_EVENTS",
    "WEBHOOK_EVENTS",
    "WebhookEventType",
    "WebhookJob",
    "WebhookJobError",
    "WebhookJobLinks",
    "WebhookOutput",
    "WebhookPayload",
    "WebhookProgress",
]


class WebhookEventType(StrEnum):
    """The `type` of a delivery; endpoints subscribe to these."""

    JOB_COMPLETED = "job.completed"
    JOB_FAILED = "job.failed"
    JOB_CANCELLED = "job.cancelled"
    JOB_STARTED = "job.started"
    JOB_PROGRESS = "job.progress"
    # Sent by `POST /webhooks/endpoints/{id}/test` only.
    WEBHOOK_TEST = "webhook.test"


WEBHOOK_EVENTS: frozenset[WebhookEventType] = frozenset(
    WebhookEventType.__members__.values()
) - {WebhookEventType.WEBHOOK_TEST}
"""The event types an endpoint may subscribe to."""

DEFAULT_WEBHOOK_EVENTS: frozenset[WebhookEventType] = frozenset(
    {
        WebhookEventType.JOB_COMPLETED,
        WebhookEventType.JOB_FAILED,
        WebhookEventType.JOB_CANCELLED,
    }
)
"""What an endpoint with an empty filter receives, and all a job's own
`webhook_url` ever receives: how each job ends."""


class _Body(BaseModel):
    model_config = ConfigDict(frozen=True)


class WebhookJobLinks(_Body):
    """Absolute URLs of the job's REST resources."""

    self: str
    events: str
    cancel: str


class WebhookProgress(_Body):
    """Where a running job is."""

    node_id: str | None
    class_type: str | None
    step: int | None
    max: int | None
    fraction: float
    nodes_done: int
    nodes_total: int


class WebhookOutput(_Body):
    """An output of the job; `url` is a short-lived presigned download URL,
    null when the file is gone."""

    file_id: str
    node_id: str
    filename: str
    content_type: str
    size: int
    width: int | None
    height: int | None
    kind: str | None
    url: str | None
    url_expires_at: AwareDatetime | None


class WebhookJobError(_Body):
    """Why the job failed (`expired` for a job that timed out waiting)."""

    code: str
    message: str
    node_id: str | None
    class_type: str | None


class WebhookJob(_Body):
    """The job as `GET /workflows/{id}` shows it."""

    execution_id: str
    status: str = Field(description="pending, running, completed, failed or cancelled.")
    priority: str = Field(description="low, normal or high.")
    created_at: AwareDatetime | None
    started_at: AwareDatetime | None
    completed_at: AwareDatetime | None
    duration_seconds: float | None
    queue_position: int | None
    attempt: int
    cancel_requested: bool
    error: WebhookJobError | None
    metadata: dict[str, str]
    links: WebhookJobLinks
    progress: WebhookProgress | None
    outputs: list[WebhookOutput]
    webhook_url: str | None
    timeout_minutes: float


class WebhookPayload(_Body):
    """The body of a delivery: what happened, when, and the job as it is now.

    Sent once per event and target, signed per Standard Webhooks; the
    `webhook-id` header is the same on every retry and replay, so receivers
    de-duplicate on it."""

    type: WebhookEventType
    timestamp: AwareDatetime = Field(description="When the event happened.")
    data: WebhookJob | None = Field(description="Null only for `webhook.test`.")
