"""Publishes outbox rows to Kafka and deletes them once Kafka has them.

Woken by `NOTIFY workflow_outbox` after each commit that adds rows, and by a
poll timer in case a notification is lost. Rows are locked with `SKIP LOCKED`,
so several instances relay side by side; a row is deleted in the transaction
that locked it, after the broker acknowledged it, so a crash republishes
rather than loses (consumers de-duplicate on the event id). A row that can
never be sent (larger than its topic accepts, say) is moved to `outbox_dead`
and logged, so it never holds up the rows behind it; a broker outage leaves
rows where they are for the next round.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog
from aiokafka import AIOKafkaProducer  # type: ignore[import-untyped]
from aiokafka.errors import (  # type: ignore[import-untyped]
    InvalidTopicError,
    KafkaError,
    MessageSizeTooLargeError,
    RecordListTooLargeError,
)
from opentelemetry import trace
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from comfyserve.contracts.headers import event_headers
from comfyserve.contracts.topics import FINISHED
from comfyserve.runtime.kafka import (
    PRODUCER_MAX_REQUEST_BYTES,
    EventTooLargeError,
    RenewingProducer,
    check_size,
)
from comfyserve.runtime.logging import describe_error
from comfyserve.runtime.notifications import listen_forever
from comfyserve.runtime.telemetry import context_from_headers, inject_headers
from comfyserve.workflow.adapters.partner_keys import PartnerKeys
from comfyserve.workflow.db import OUTBOX_CHANNEL
from comfyserve.workflow.errors import PartnerKeysUnavailableError
from comfyserve.workflow.outbox import repository
from comfyserve.workflow.outbox.repository import OutboxMessage
from comfyserve.workflow.telemetry import Metrics

log = structlog.get_logger(__name__)
_tracer = trace.get_tracer(__name__)

_RETRY_SECONDS = 1.0
# Errors no retry can cure: the record itself is unacceptable.
_NEVER_SENDABLE = (
    EventTooLargeError,
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    InvalidTopicError,
)


def create_producer(bootstrap_servers: str) -> RenewingProducer:
    return RenewingProducer(
        lambda: AIOKafkaProducer(
            bootstrap_servers=bootstrap_servers,
            enable_idempotence=True,
            acks="all",
            # Every submitted job waits on this send; a batch is already formed
            # from the rows locked together, so lingering only adds latency.
            linger_ms=0,
            max_request_size=PRODUCER_MAX_REQUEST_BYTES,
        )
    )


@dataclass(frozen=True, slots=True)
class RelayRound:
    sent: int = 0
    buried: int = 0
    retry: int = 0

    @property
    def handled(self) -> int:
        return self.sent + self.buried


class OutboxRelay:
    def __init__(
        self,
        *,
        engine: AsyncEngine,
        dsn: str,
        producer: Any,
        partner_keys: PartnerKeys,
        metrics: Metrics,
        poll_seconds: float,
        batch_size: int,
        clock: Callable[[], datetime],
    ) -> None:
        self._engine = engine
        self._dsn = dsn
        self._producer = producer
        self._partner_keys = partner_keys
        self._metrics = metrics
        self._poll_seconds = poll_seconds
        self._batch_size = batch_size
        self._clock = clock
        self._wake = asyncio.Event()

    async def run(self) -> None:
        """Relay until cancelled."""
        listener = asyncio.create_task(self._listen(), name="outbox-listen")
        try:
            while True:
                try:
                    relayed = await self.relay_once()
                except (SQLAlchemyError, OSError) as error:
                    log.warning(
                        "workflow.outbox.relay_failed", error=describe_error(error)
                    )
                    await asyncio.sleep(_RETRY_SECONDS)
                    continue
                if relayed.retry:
                    await asyncio.sleep(_RETRY_SECONDS)
                    continue
                if relayed.handled == self._batch_size:
                    continue
                try:
                    await asyncio.wait_for(self._wake.wait(), self._poll_seconds)
                except TimeoutError:
                    pass
                self._wake.clear()
        finally:
            listener.cancel()
            await asyncio.gather(listener, return_exceptions=True)

    async def relay_once(self) -> RelayRound:
        """Publish one batch: sent rows are deleted, rows that can never be
        sent are buried, the rest stay for the next round."""
        async with self._engine.connect() as conn, conn.begin():
            oldest, backlog = await repository.waiting(conn)
            self._metrics.outbox_lag.set(
                0.0 if oldest is None else (self._clock() - oldest).total_seconds()
            )
            self._metrics.outbox_backlog.set(backlog)
            messages = await repository.lock_batch(conn, self._batch_size)
            if not messages:
                return RelayRound()
            outcomes = await self._send_all(messages)
            sent = [m.id for m, error in outcomes if error is None]
            if sent:
                await repository.delete_rows(conn, sent)
            buried = [(m, e) for m, e in outcomes if isinstance(e, _NEVER_SENDABLE)]
            for message, error in buried:
                await repository.bury(conn, message, repr(error), self._clock())
        relayed = RelayRound(
            sent=len(sent),
            buried=len(buried),
            retry=len(outcomes) - len(sent) - len(buried),
        )
        self._report(relayed, outcomes, buried)
        await self._forget_partner_keys(
            [m.key for m, error in outcomes if error is None and m.topic == FINISHED]
        )
        return relayed

    async def _forget_partner_keys(self, ended: list[str]) -> None:
        """A relayed `finished` means the job has its final state, committed:
        no attempt will need its partner key again (ADR 0006). One that
        cannot be deleted now expires with the job's deadline."""
        try:
            await self._partner_keys.forget(ended)
        except PartnerKeysUnavailableError as error:
            log.warning(
                "workflow.partner_keys.forget_failed", jobs=len(ended), error=str(error)
            )

    async def _send_all(
        self, messages: list[OutboxMessage]
    ) -> list[tuple[OutboxMessage, BaseException | None]]:
        # Each record is queued in order before any delivery is awaited, so the
        # batch goes out together and keeps its order per partition.
        pending: list[tuple[OutboxMessage, Awaitable[object] | BaseException]] = []
        for message in messages:
            try:
                check_size(message.topic, message.payload, message.key.encode())
                delivery = await self._publish(message)
            except (KafkaError, EventTooLargeError) as error:
                pending.append((message, error))
            else:
                pending.append((message, delivery))
        results = await asyncio.gather(*(_settle(delivery) for _, delivery in pending))
        return [
            (message, error)
            for (message, _), error in zip(pending, results, strict=True)
        ]

    async def _publish(self, message: OutboxMessage) -> Awaitable[object]:
        """Queue one row on the producer, in a span of the trace the row was
        written in; the record carries that span's context on."""
        with _tracer.start_as_current_span(
            f"outbox.relay {message.topic}",
            context=context_from_headers(list(message.headers.items())),
            attributes={
                "messaging.destination.name": message.topic,
                "comfyserve.job.id": message.key,
            },
        ):
            delivery: Awaitable[object] = await self._producer.send(
                message.topic,
                value=message.payload,
                key=message.key.encode(),
                headers=event_headers(inject_headers(message.headers)),
            )
        return delivery

    def _report(
        self,
        relayed: RelayRound,
        outcomes: list[tuple[OutboxMessage, BaseException | None]],
        buried: list[tuple[OutboxMessage, BaseException | None]],
    ) -> None:
        self._metrics.outbox_published.inc(relayed.sent)
        published = self._clock()
        for message, error in outcomes:
            if error is None:
                self._metrics.relay_lag.observe(
                    max((published - message.created_at).total_seconds(), 0.0)
                )
        self._metrics.outbox_dead.inc(relayed.buried)
        for message, error in buried:
            log.error(
                "workflow.outbox.buried",
                row_id=message.id,
                topic=message.topic,
                key=message.key,
                size=len(message.payload),
                error=repr(error),
            )
        if relayed.retry:
            first = next(e for _, e in outcomes if e is not None)
            log.warning(
                "workflow.outbox.send_failed", rows=relayed.retry, error=repr(first)
            )
        log.debug("workflow.outbox.published", count=relayed.sent)

    async def _listen(self) -> None:
        await listen_forever(self._dsn, OUTBOX_CHANNEL, lambda _: self._wake.set())


async def _settle(delivery: Awaitable[object] | BaseException) -> BaseException | None:
    """None once delivered, else why not."""
    if isinstance(delivery, BaseException):
        return delivery
    try:
        await delivery
    except KafkaError as error:
        failure: BaseException = error
        return failure
    return None
