"""Deliveries: recorded from events (before the event's offset is committed),
read, replayed. Sending is the worker's."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from datetime import datetime
from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from comfyserve.contracts.events import (
    FinalStatus,
    JobFinished,
    JobProgressed,
    JobStarted,
)
from comfyserve.contracts.webhooks import WebhookEventType
from comfyserve.notifier import paging
from comfyserve.notifier.clock import utcnow
from comfyserve.notifier.deliveries import repository
from comfyserve.notifier.deliveries.models import (
    Delivery,
    DeliveryFilter,
    NewDelivery,
)
from comfyserve.notifier.deliveries.worker import ENDPOINT_KEY, JOB_URL_KEY
from comfyserve.notifier.endpoints import repository as endpoints
from comfyserve.notifier.endpoints.cache import EndpointCache
from comfyserve.notifier.endpoints.models import Endpoint
from comfyserve.notifier.endpoints.service import parse_endpoint_id
from comfyserve.notifier.errors import DeliveryNotFound, EndpointNotFound
from comfyserve.runtime.database import autocommit
from comfyserve.runtime.notifications import notify
from comfyserve.runtime.telemetry import current_traceparent

_FINAL_TYPES = {
    FinalStatus.COMPLETED: WebhookEventType.JOB_COMPLETED,
    FinalStatus.FAILED: WebhookEventType.JOB_FAILED,
    FinalStatus.CANCELLED: WebhookEventType.JOB_CANCELLED,
}

JobEventIn = JobFinished | JobStarted | JobProgressed


@dataclass(frozen=True, slots=True)
class DeliveryPage:
    deliveries: list[Delivery]
    next_cursor: str


def channel(schema: str) -> str:
    """The NOTIFY channel that says deliveries of `schema` are due now."""
    return f"{schema}_deliveries"


def webhook_event_type(event: JobEventIn) -> WebhookEventType:
    if isinstance(event, JobFinished):
        return _FINAL_TYPES[event.data.status]
    if isinstance(event, JobStarted):
        return WebhookEventType.JOB_STARTED
    return WebhookEventType.JOB_PROGRESS


def _new_id() -> str:
    # Standard Webhooks' recommended form of a message id.
    return f"msg_{uuid.uuid4().hex}"


def _to_endpoint(
    endpoint: Endpoint,
    *,
    tenant_id: str,
    job_id: str,
    event_id: UUID,
    event_type: WebhookEventType,
    event_time: datetime,
    traceparent: str | None,
) -> NewDelivery:
    return NewDelivery(
        id=_new_id(),
        tenant_id=tenant_id,
        job_id=job_id,
        event_id=event_id,
        event_type=event_type.value,
        event_time=event_time,
        endpoint_id=endpoint.id,
        target_key=f"{ENDPOINT_KEY}{endpoint.id}",
        url=endpoint.url,
        payload={"type": event_type.value, "job_id": job_id},
        traceparent=traceparent,
    )


class DeliveryService:
    def __init__(self, engine: AsyncEngine, schema: str) -> None:
        self._engine = engine
        self._channel = channel(schema)
        # Told of endpoint changes by the app's listener; until then, and
        # whenever it is not listening, it reads on every event.
        self.endpoints = EndpointCache(engine)

    async def record_event(
        self, tenant_id: str, event: JobEventIn, traceparent: str | None = None
    ) -> int:
        """Records one delivery per target of the event, once however often
        the event is handled; returns how many are new. Their attempts
        continue the trace `traceparent` names."""
        event_type = webhook_event_type(event)
        enabled = await self.endpoints.enabled(tenant_id)
        targets = [
            _to_endpoint(
                endpoint,
                tenant_id=tenant_id,
                job_id=event.subject,
                event_id=event.id,
                event_type=event_type,
                event_time=event.time,
                traceparent=traceparent,
            )
            for endpoint in enabled
            if endpoint.receives(event_type)
        ]
        if isinstance(event, JobFinished) and event.data.webhook_url:
            url = event.data.webhook_url
            targets.append(
                NewDelivery(
                    id=_new_id(),
                    tenant_id=tenant_id,
                    job_id=event.subject,
                    event_id=event.id,
                    event_type=event_type.value,
                    event_time=event.time,
                    endpoint_id=None,
                    target_key=f"{JOB_URL_KEY}{url}",
                    url=url,
                    payload={"type": event_type.value, "job_id": event.subject},
                    traceparent=traceparent,
                )
            )
        if not targets:
            return 0
        async with self._engine.begin() as conn:
            return await self._insert(conn, targets)

    async def _insert(self, conn: AsyncConnection, targets: list[NewDelivery]) -> int:
        new = await repository.insert(conn, targets)
        if new:
            await notify(conn, self._channel)
        return new

    async def test(self, tenant_id: str, endpoint_id: str) -> Delivery:
        async with self._engine.begin() as conn:
            endpoint = await endpoints.get_endpoint(
                conn, tenant_id, parse_endpoint_id(endpoint_id)
            )
            if endpoint is None:
                raise EndpointNotFound(endpoint_id)
            delivery = _to_endpoint(
                endpoint,
                tenant_id=tenant_id,
                job_id="",
                event_id=uuid.uuid4(),
                event_type=WebhookEventType.WEBHOOK_TEST,
                event_time=utcnow(),
                # A test delivery joins the trace of the request that asked.
                traceparent=current_traceparent(),
            )
            await self._insert(conn, [delivery])
            found = await repository.get(conn, tenant_id, delivery.id)
        assert found is not None  # inserted in this transaction
        return found

    async def get(self, tenant_id: str, delivery_id: str) -> Delivery:
        async with autocommit(self._engine) as conn:
            found = await repository.get(conn, tenant_id, delivery_id)
            if found is None:
                raise DeliveryNotFound(delivery_id)
            attempts = await repository.attempts(conn, delivery_id)
        return replace(found, attempts=tuple(attempts))

    async def list(
        self, tenant_id: str, where: DeliveryFilter, size: int, cursor: str
    ) -> DeliveryPage:
        limit = paging.page_size(size)
        async with autocommit(self._engine) as conn:
            rows = await repository.list_page(
                conn, tenant_id, where, limit + 1, paging.decode(cursor)
            )
        more = len(rows) > limit
        rows = rows[:limit]
        next_cursor = (
            paging.encode(paging.Position(rows[-1].created_at, rows[-1].id))
            if more
            else ""
        )
        return DeliveryPage(rows, next_cursor)

    async def replay(self, tenant_id: str, delivery_id: str) -> Delivery:
        """The same payload and `webhook-id` again, as a new attempt due now
        with a fresh retry schedule, in the delivery's trace as before."""
        async with self._engine.begin() as conn:
            if not await repository.replay(conn, tenant_id, delivery_id):
                raise DeliveryNotFound(delivery_id)
            await notify(conn, self._channel)
            found = await repository.get(conn, tenant_id, delivery_id)
        assert found is not None  # updated in this transaction
        return found
