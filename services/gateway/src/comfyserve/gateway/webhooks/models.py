"""Request and response bodies of the webhook routes."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated

from pydantic import AfterValidator, BaseModel, Field, HttpUrl

from comfyserve.contracts.webhooks import WEBHOOK_EVENTS, WebhookEventType
from comfyserve.gateway.bodies import RequestBody

MAX_PAGE_SIZE = 100
MAX_DESCRIPTION_CHARS = 500

_EVENT_TYPES = (
    "Event types it receives, of "
    + ", ".join(f"`{event}`" for event in sorted(WEBHOOK_EVENTS))
    + "; empty: how each job ends (`job.completed`, `job.failed`, "
    "`job.cancelled`)."
)


def _subscribable(events: list[WebhookEventType]) -> list[WebhookEventType]:
    if WebhookEventType.WEBHOOK_TEST in events:
        raise ValueError("webhook.test is only sent by the test route")
    return list(dict.fromkeys(events))


EventTypes = Annotated[
    list[WebhookEventType],
    AfterValidator(_subscribable),
    Field(max_length=len(WEBHOOK_EVENTS), description=_EVENT_TYPES),
]


class EndpointCreate(RequestBody):
    url: HttpUrl = Field(
        description=(
            "Where deliveries are POSTed: http(s), on a public address "
            "(loopback, private, link-local and metadata addresses are refused)."
        )
    )
    event_types: EventTypes = Field(default_factory=list)
    description: str = Field(default="", max_length=MAX_DESCRIPTION_CHARS)


class EndpointUpdate(RequestBody):
    """Only the fields sent change; `enabled: true` re-enables an endpoint the
    service disabled (a receiver that answered 410)."""

    url: HttpUrl | None = None
    event_types: EventTypes | None = None
    description: str | None = Field(default=None, max_length=MAX_DESCRIPTION_CHARS)
    enabled: bool | None = None


class Endpoint(BaseModel):
    id: str
    url: str
    event_types: list[str] = Field(description=_EVENT_TYPES)
    description: str
    enabled: bool
    disabled_reason: str | None = Field(
        description="Why the service disabled it (`gone`: it answered 410)."
    )
    created_at: datetime | None
    updated_at: datetime | None


class EndpointWithSecret(Endpoint):
    secret: str = Field(
        description="`whsec_` + base64: verify deliveries with it. Shown only here."
    )


class EndpointPage(BaseModel):
    items: list[Endpoint]
    next_cursor: str | None


class SigningSecret(BaseModel):
    """The secret that signs deliveries to executions' own `webhook_url`."""

    secret: str = Field(description="`whsec_` + base64.")
    created_at: datetime | None
    previous_expires_at: datetime | None = Field(
        description=(
            "During a rotation's overlap, until when the previous secret still "
            "signs each delivery alongside this one; null otherwise."
        )
    )


class DeliveryStatus(StrEnum):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    DEAD = "dead"


class Attempt(BaseModel):
    number: int
    started_at: datetime | None
    status_code: int | None = Field(description="Null when no HTTP answer came.")
    latency_ms: int
    response_excerpt: str
    error: str | None = Field(description="Why it failed without an HTTP status.")


class Delivery(BaseModel):
    id: str = Field(
        description="The `webhook-id` header: the same on every attempt and replay."
    )
    execution_id: str
    event_type: str
    endpoint_id: str | None = Field(
        description="Null for a delivery to the execution's own `webhook_url`."
    )
    url: str
    status: DeliveryStatus
    attempt_count: int
    created_at: datetime | None
    next_attempt_at: datetime | None
    dead_reason: str | None
    attempts: list[Attempt] | None = Field(
        default=None,
        description="Oldest first; only on `GET /webhooks/deliveries/{id}`.",
    )


class DeliveryPage(BaseModel):
    items: list[Delivery]
    next_cursor: str | None
