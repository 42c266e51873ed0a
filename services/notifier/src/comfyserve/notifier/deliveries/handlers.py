"""Kafka transport: a FastStream subscriber on the job events that trigger
webhooks (finished; started and progress for endpoints that ask for them).

Each record's deliveries are recorded, then its offset committed (FastStream's
ack), so a crash between the two records nothing twice (the rows are unique
per event and target) and loses nothing. A database outage nacks the record:
it is retried after a pause and nothing past it is committed. A record that
can never apply goes to the topic's DLQ with a `dlq-reason` header.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Annotated

import asyncpg
import structlog
from aiokafka import ConsumerRecord  # type: ignore[import-untyped]
from aiokafka.errors import KafkaError  # type: ignore[import-untyped]
from faststream import AckPolicy, Context
from faststream.exceptions import NackMessage
from faststream.kafka import KafkaBroker, Topic
from faststream.message import StreamMessage
from pydantic import ValidationError
from sqlalchemy.exc import DataError, IntegrityError, SQLAlchemyError

from comfyserve.contracts.events import (
    DeliveryDead,
    JobFinished,
    JobProgressed,
    JobStarted,
    dump_event,
)
from comfyserve.contracts.headers import headers_to_carrier
from comfyserve.contracts.topics import DELIVERIES_DEAD, dlq
from comfyserve.notifier.deliveries.service import DeliveryService, JobEventIn
from comfyserve.notifier.settings import Settings
from comfyserve.notifier.telemetry import Metrics
from comfyserve.runtime.kafka import (
    DLQ_REASON_HEADER,
    FETCH_MAX_BYTES,
    PRODUCER_MAX_REQUEST_BYTES,
    check_size,
)
from comfyserve.runtime.logging import describe_error

log = structlog.get_logger(__name__)

RETRY_SECONDS = 1.0
# Runs of a record whose handler fails unexpectedly (a bug) before it goes to
# the DLQ: it must neither loop forever nor hold up the records behind it.
HANDLER_ATTEMPTS = 3
# Outages: the record is retried. IntegrityError and DataError are the database
# refusing the record's values, which no retry changes; they are caught first.
_RETRYABLE = (SQLAlchemyError, asyncpg.PostgresError, OSError, KafkaError)

# The subscriber is not a batch one: its message carries one record.
Record = Annotated[ConsumerRecord, Context("message.raw_message")]


class _Poison(Exception):
    """A record that can never be applied."""


def create_broker(settings: Settings) -> KafkaBroker:
    return KafkaBroker(
        settings.kafka_bootstrap_servers,
        client_id="comfyserve-notifier",
        max_request_size=PRODUCER_MAX_REQUEST_BYTES,
        # A plain library logger: its lines go through the service's logging.
        logger=logging.getLogger(__name__),
        log_level=logging.DEBUG,
    )


class KafkaDeadLetters:
    """Publishes dead deliveries to the notifier's dead-delivery topic."""

    def __init__(self, broker: KafkaBroker, topic: str | None = None) -> None:
        self._broker = broker
        self._topic = topic or DELIVERIES_DEAD

    async def publish(self, event: DeliveryDead) -> None:
        value = dump_event(event)
        check_size(self._topic, value, event.subject.encode())
        await self._broker.publish(value, topic=self._topic, key=event.subject.encode())


def subscribe(
    broker: KafkaBroker,
    settings: Settings,
    deliveries: DeliveryService,
    metrics: Metrics,
    *,
    retry_seconds: float = RETRY_SECONDS,
) -> None:
    models: dict[str, type[JobEventIn]] = {
        settings.finished_topic: JobFinished,
        settings.started_topic: JobStarted,
        settings.progress_topic: JobProgressed,
    }
    handler = EventHandler(broker, deliveries, metrics, models, retry_seconds)
    broker.subscriber(
        # Provisioned by their owners with their partitions and limits: a
        # consumer must never create them with a broker's defaults.
        *(Topic(name, declare=False) for name in models),
        group_id=settings.consumer_group,
        ack_policy=AckPolicy.NACK_ON_ERROR,
        auto_offset_reset=settings.first_start_offset,
        max_partition_fetch_bytes=FETCH_MAX_BYTES,
        decoder=_raw_body,
        title="notifier.job_events",
    )(handler.on_job_event)


async def _raw_body(message: StreamMessage[object]) -> bytes:
    # A record that is not JSON must reach the DLQ, not fail in FastStream.
    return message.body


class EventHandler:
    def __init__(
        self,
        broker: KafkaBroker,
        deliveries: DeliveryService,
        metrics: Metrics,
        models: dict[str, type[JobEventIn]],
        retry_seconds: float,
    ) -> None:
        self._broker = broker
        self._deliveries = deliveries
        self._metrics = metrics
        self._models = models
        self._retry_seconds = retry_seconds
        self._failures: dict[tuple[str, int, int], int] = {}

    async def on_job_event(self, body: bytes, record: Record) -> None:
        where = (record.topic, record.partition, record.offset)
        try:
            await self._handle(body, record)
        except _RETRYABLE as error:
            await self._retry_later(record, error)
        except Exception as error:
            failures = self._failures.get(where, 0) + 1
            if failures >= HANDLER_ATTEMPTS:
                self._failures.pop(where, None)
                await self._dead_letter(
                    record, f"handler failed {failures} times: {type(error).__name__}"
                )
                return
            self._failures[where] = failures
            await self._retry_later(record, error)
        self._failures.pop(where, None)

    async def _retry_later(self, record: ConsumerRecord, error: Exception) -> None:
        self._metrics.consumer_errors.labels("retried").inc()
        log.warning(
            "notifier.consumer.retry",
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            error=describe_error(error),
        )
        # The pause keeps an outage from turning into a busy loop of retries.
        await asyncio.sleep(self._retry_seconds)
        raise NackMessage() from error

    async def _handle(self, body: bytes, record: ConsumerRecord) -> None:
        try:
            await self._apply(record.topic, body)
        except _Poison as poison:
            await self._dead_letter(record, str(poison))

    async def _apply(self, topic: str, body: bytes) -> None:
        model = self._models[topic]
        try:
            event = model.model_validate_json(body)
        except ValidationError as error:
            raise _Poison(f"unparseable: {error.error_count()} errors") from error
        if event.tenant_id is None:
            raise _Poison("tenant_id: missing")
        try:
            new = await self._deliveries.record_event(event.tenant_id, event)
        except (IntegrityError, DataError) as error:
            raise _Poison(
                f"rejected by the database: {type(error.orig).__name__}"
            ) from error
        if new:
            self._metrics.recorded.labels(event.type).inc(new)

    async def _dead_letter(self, record: ConsumerRecord, reason: str) -> None:
        headers = headers_to_carrier(record.headers)
        headers[DLQ_REASON_HEADER] = reason
        await self._broker.publish(
            record.value, topic=dlq(record.topic), key=record.key, headers=headers
        )
        self._metrics.consumer_errors.labels("dead_lettered").inc()
        log.warning(
            "notifier.consumer.dead_lettered",
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            reason=reason,
        )
