"""A tenant's webhook endpoints and signing secrets."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from comfyserve.contracts.webhooks import DEFAULT_WEBHOOK_EVENTS, WebhookEventType


@dataclass(frozen=True, slots=True)
class Endpoint:
    id: UUID
    tenant_id: str
    url: str
    # Empty: the final events (`DEFAULT_WEBHOOK_EVENTS`).
    event_types: tuple[str, ...]
    description: str
    enabled: bool
    disabled_reason: str
    created_at: datetime
    updated_at: datetime

    def receives(self, event_type: WebhookEventType) -> bool:
        wanted = self.event_types or tuple(DEFAULT_WEBHOOK_EVENTS)
        return event_type in wanted


@dataclass(frozen=True, slots=True)
class Secrets:
    """A secret and, during a rotation's overlap, the one it replaced."""

    current: str
    previous: str | None
    previous_expires_at: datetime | None
    created_at: datetime

    def signing(self, now: datetime) -> tuple[str, ...]:
        """The secrets that sign a delivery sent at `now`."""
        if self.previous is None or self.previous_expires_at is None:
            return (self.current,)
        if self.previous_expires_at <= now:
            return (self.current,)
        return (self.current, self.previous)


@dataclass(frozen=True, slots=True)
class EndpointChanges:
    """What an update sets; None leaves a field as it is."""

    url: str | None = None
    event_types: tuple[str, ...] | None = None
    description: str | None = None
    enabled: bool | None = None
