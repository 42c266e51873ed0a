"""The delivery loop: claims due deliveries, signs and sends each, records
what came back and when to try again.

Claims are short transactions (`FOR UPDATE SKIP LOCKED`), so instances share
the work and no two send the same attempt; no transaction is open while a
request is in flight. A claim lapses after `lease_seconds`: a delivery whose
instance died mid-attempt is taken again, with the same `webhook-id`.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

import structlog
from opentelemetry import trace
from sqlalchemy.ext.asyncio import AsyncEngine

from comfyserve.contracts.events import DeliveryDead, DeliveryDeadData
from comfyserve.contracts.headers import TRACEPARENT
from comfyserve.contracts.webhooks import WebhookEventType, WebhookJob, WebhookPayload
from comfyserve.notifier.clock import utcnow
from comfyserve.notifier.deliveries import repository
from comfyserve.notifier.deliveries.jobs import JobGone, JobSource, JobUnavailable
from comfyserve.notifier.deliveries.models import (
    Attempt,
    Claimed,
    Delivery,
    DeliveryStatus,
    Outcome,
)
from comfyserve.notifier.deliveries.sender import Sent, WebhookSender
from comfyserve.notifier.endpoints import repository as endpoints
from comfyserve.notifier.settings import Settings
from comfyserve.notifier.signing import new_secret, signed_headers
from comfyserve.notifier.telemetry import Metrics
from comfyserve.runtime.database import autocommit
from comfyserve.runtime.telemetry import context_from_headers

log = structlog.get_logger(__name__)

ENDPOINT_KEY = "endpoint:"
JOB_URL_KEY = "job:"
GONE = "gone"
_RETRIED_STATUSES = frozenset({408, 429})
# How soon a delivery whose payload could not be made (our outage, not the
# receiver's) is tried again; it costs the receiver no retry.
_UNAVAILABLE_DELAY = timedelta(seconds=5)
_GAUGE_SECONDS = 5.0


class DeadLetters(Protocol):
    async def publish(self, event: DeliveryDead) -> None: ...


@dataclass(frozen=True, slots=True)
class Verdict:
    status: DeliveryStatus
    retry: bool = False
    reason: str = ""
    gone: bool = False


def verdict(sent: Sent) -> Verdict:
    """What an answer means for the delivery (before counting retries)."""
    code = sent.status_code
    if code is None:
        if sent.refused:
            return Verdict(DeliveryStatus.DEAD, reason=f"refused: {sent.error}")
        return Verdict(DeliveryStatus.PENDING, retry=True)
    if 200 <= code < 300:
        return Verdict(DeliveryStatus.SUCCEEDED)
    if code == 410:
        return Verdict(DeliveryStatus.DEAD, reason=GONE, gone=True)
    if code >= 500 or code in _RETRIED_STATUSES:
        return Verdict(DeliveryStatus.PENDING, retry=True)
    return Verdict(DeliveryStatus.DEAD, reason=f"answered {code}")


class DeliveryWorker:
    def __init__(
        self,
        engine: AsyncEngine,
        settings: Settings,
        jobs: JobSource,
        sender: WebhookSender,
        dead_letters: DeadLetters,
        metrics: Metrics,
        *,
        source: str,
        jitter: Callable[[], float] = random.random,
        tracer: trace.Tracer | None = None,
    ) -> None:
        self._engine = engine
        self._settings = settings
        self._jobs = jobs
        self._sender = sender
        self._dead_letters = dead_letters
        self._metrics = metrics
        self._source = source
        self._jitter = jitter
        self._tracer = tracer or trace.get_tracer(__name__)
        self._wake = asyncio.Event()
        self._in_flight: set[asyncio.Task[None]] = set()

    def wake(self, _payload: str = "") -> None:
        self._wake.set()

    async def run(self) -> None:
        """Sends due deliveries until cancelled, sleeping only until the next
        one is due, a NOTIFY says new work is, or an attempt ends."""
        last_gauge = 0.0
        loop = asyncio.get_running_loop()
        try:
            while True:
                self._wake.clear()
                started = await self.start_due()
                if loop.time() - last_gauge >= _GAUGE_SECONDS:
                    await self._update_gauge()
                    last_gauge = loop.time()
                if started and len(self._in_flight) < self._settings.max_in_flight:
                    continue
                await self._sleep()
        finally:
            for task in self._in_flight:
                task.cancel()
            await asyncio.gather(*self._in_flight, return_exceptions=True)

    async def _sleep(self) -> None:
        timeout = self._settings.idle_poll_seconds
        async with autocommit(self._engine) as conn:
            due = await repository.next_due(conn)
        # Work due already but not claimed waits for its target's attempts in
        # flight (a wake-up when one of ours ends, the poll for others').
        if due is not None and due > utcnow():
            timeout = min(timeout, (due - utcnow()).total_seconds())
        waker = asyncio.create_task(self._wake.wait())
        try:
            await asyncio.wait(
                {waker, *self._in_flight},
                timeout=timeout,
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            waker.cancel()

    async def start_due(self) -> int:
        """Claims what is due, as far as the in-flight limit allows, and
        starts an attempt for each; returns how many started."""
        free = self._settings.max_in_flight - len(self._in_flight)
        if free <= 0:
            return 0
        async with self._engine.begin() as conn:
            claimed = await repository.claim_due(
                conn,
                claim=uuid.uuid4(),
                limit=free,
                per_target=self._settings.endpoint_concurrency,
                lease_seconds=self._settings.lease_seconds,
            )
        for item in claimed:
            task = asyncio.create_task(self._guarded(item))
            self._in_flight.add(task)
            task.add_done_callback(self._in_flight.discard)
        return len(claimed)

    async def drain(self) -> None:
        """Waits for every attempt started so far (tests, shutdown)."""
        while self._in_flight:
            await asyncio.gather(*self._in_flight, return_exceptions=True)

    async def _update_gauge(self) -> None:
        async with autocommit(self._engine) as conn:
            self._metrics.due.set(await repository.due_count(conn))

    async def _guarded(self, claimed: Claimed) -> None:
        try:
            await self.attempt(claimed)
        except asyncio.CancelledError:
            raise
        except Exception:
            # The claim lapses and another attempt follows; the loop goes on.
            log.exception("notifier.delivery.crashed", delivery_id=claimed.delivery.id)

    async def attempt(self, claimed: Claimed) -> None:
        """One attempt, in a span of the trace the delivery was recorded in
        (the job's), whichever instance makes it and however late. The span
        names no part of the URL: its path or query may hold the receiver's
        secret."""
        delivery = claimed.delivery
        stored = delivery.traceparent
        parent = context_from_headers(
            None if stored is None else [(TRACEPARENT, stored)]
        )
        attributes: dict[str, str | int] = {
            "comfyserve.delivery.id": delivery.id,
            "comfyserve.delivery.attempt": delivery.attempt_count + 1,
            "comfyserve.event.type": delivery.event_type,
        }
        if delivery.job_id:
            attributes["comfyserve.job.id"] = delivery.job_id
        if delivery.endpoint_id is not None:
            attributes["comfyserve.endpoint.id"] = str(delivery.endpoint_id)
        with self._tracer.start_as_current_span(
            "webhook.deliver", context=parent, attributes=attributes
        ):
            await self._attempt(claimed)

    async def _attempt(self, claimed: Claimed) -> None:
        delivery = claimed.delivery
        secrets = await self._secrets(claimed)
        if secrets is None:
            return
        try:
            body = await self._body(delivery)
        except JobGone:
            await self._kill(claimed, "job_not_found")
            return
        except JobUnavailable as error:
            log.warning(
                "notifier.delivery.payload_unavailable",
                delivery_id=delivery.id,
                error=str(error),
            )
            async with self._engine.begin() as conn:
                await repository.release(conn, claimed, utcnow() + _UNAVAILABLE_DELAY)
            return
        # The lease then covers the request whatever rendering took: the
        # attempt's timeout is shorter than the lease.
        async with self._engine.begin() as conn:
            if not await repository.confirm(
                conn, claimed, self._settings.lease_seconds
            ):
                log.warning("notifier.delivery.claim_lapsed", delivery_id=delivery.id)
                return
        started_at = utcnow()
        headers = signed_headers(
            secrets, delivery.id, int(started_at.timestamp()), body
        )
        sent = await self._sender.send(delivery.url, headers, body)
        if sent.status_code is not None:
            span = trace.get_current_span()
            span.set_attribute("http.response.status_code", sent.status_code)
        self._metrics.latency.observe(sent.latency_ms / 1000)
        await self._record(claimed, started_at, sent)

    async def _secrets(self, claimed: Claimed) -> tuple[str, ...] | None:
        """The secrets that sign it; None when its endpoint is gone or off
        (the delivery is then dead)."""
        delivery = claimed.delivery
        now = utcnow()
        async with self._engine.begin() as conn:
            if not delivery.target_key.startswith(ENDPOINT_KEY):
                found = await endpoints.ensure_signing_secret(
                    conn, delivery.tenant_id, new_secret()
                )
                return found.signing(now)
            endpoint = (
                None
                if delivery.endpoint_id is None
                else await endpoints.get_endpoint(
                    conn, delivery.tenant_id, delivery.endpoint_id
                )
            )
            secrets = (
                None
                if endpoint is None or delivery.endpoint_id is None
                else await endpoints.endpoint_secrets(conn, delivery.endpoint_id)
            )
        if endpoint is None or secrets is None:
            await self._kill(claimed, "endpoint_deleted")
            return None
        if not endpoint.enabled:
            await self._kill(
                claimed, f"endpoint_disabled{_why(endpoint.disabled_reason)}"
            )
            return None
        return secrets.signing(now)

    async def _body(self, delivery: Delivery) -> bytes:
        job: WebhookJob | None = None
        if delivery.event_type != WebhookEventType.WEBHOOK_TEST:
            job = await self._jobs.job(delivery.tenant_id, delivery.job_id)
        payload = WebhookPayload(
            type=WebhookEventType(delivery.event_type),
            timestamp=delivery.event_time,
            data=job,
        )
        return payload.model_dump_json().encode()

    def _outcome(self, delivery: Delivery, started_at: datetime, sent: Sent) -> Outcome:
        attempt = Attempt(
            number=delivery.attempt_count + 1,
            started_at=started_at,
            status_code=sent.status_code,
            latency_ms=sent.latency_ms,
            response_excerpt=sent.excerpt,
            error=sent.error,
        )
        judged = verdict(sent)
        if not judged.retry:
            return Outcome(attempt, judged.status, None, judged.reason)
        schedule = self._settings.retry_schedule_seconds
        if delivery.failures >= len(schedule):
            return Outcome(
                attempt, DeliveryStatus.DEAD, None, "retries exhausted", failed=True
            )
        delay = schedule[delivery.failures]
        delay *= 1 + self._jitter() * self._settings.retry_jitter
        return Outcome(
            attempt,
            DeliveryStatus.PENDING,
            utcnow() + timedelta(seconds=delay),
            failed=True,
        )

    async def _record(self, claimed: Claimed, started_at: datetime, sent: Sent) -> None:
        delivery = claimed.delivery
        outcome = self._outcome(delivery, started_at, sent)
        async with self._engine.begin() as conn:
            recorded = await repository.record_outcome(conn, claimed, outcome)
            if recorded and verdict(sent).gone and delivery.endpoint_id is not None:
                await endpoints.disable_endpoint(conn, delivery.endpoint_id, GONE)
        if not recorded:
            log.warning("notifier.delivery.claim_lapsed", delivery_id=delivery.id)
            return
        label = {
            DeliveryStatus.SUCCEEDED: "succeeded",
            DeliveryStatus.PENDING: "retry",
            DeliveryStatus.DEAD: "dead",
        }[outcome.status]
        trace.get_current_span().set_attribute("comfyserve.delivery.outcome", label)
        self._metrics.attempts.labels(label).inc()
        log.info(
            "notifier.delivery.attempted",
            delivery_id=delivery.id,
            attempt=outcome.attempt.number,
            status_code=sent.status_code,
            outcome=label,
            latency_ms=sent.latency_ms,
        )
        if outcome.status is DeliveryStatus.DEAD:
            await self._dead(delivery, outcome.dead_reason, outcome.attempt.number)

    async def _kill(self, claimed: Claimed, reason: str) -> None:
        async with self._engine.begin() as conn:
            killed = await repository.kill(conn, claimed, reason)
        if killed:
            await self._dead(claimed.delivery, reason, claimed.delivery.attempt_count)

    async def _dead(self, delivery: Delivery, reason: str, attempts: int) -> None:
        self._metrics.dead.inc()
        log.warning("notifier.delivery.dead", delivery_id=delivery.id, reason=reason)
        event = DeliveryDead(
            source=self._source,
            subject=delivery.id,
            tenant_id=delivery.tenant_id,
            data=DeliveryDeadData(
                delivery_id=delivery.id,
                event_type=delivery.event_type,
                job_id=delivery.job_id or None,
                endpoint_id=None
                if delivery.endpoint_id is None
                else str(delivery.endpoint_id),
                url=delivery.url,
                attempts=attempts,
                reason=reason,
            ),
        )
        # The row says it is dead whatever happens here; the topic tells
        # whoever watches dead letters.
        try:
            await self._dead_letters.publish(event)
        except Exception:
            log.exception(
                "notifier.delivery.dead_letter_failed", delivery_id=delivery.id
            )


def _why(reason: str) -> str:
    return f" ({reason})" if reason else ""
