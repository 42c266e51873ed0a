"""Kafka transport: a FastStream subscriber on the job events that trigger
webhooks (finished; started and progress for endpoints that ask for them).

Each record's deliveries are recorded, then its offset committed, so a crash
between the two records nothing twice (the rows are unique per event and
target) and loses nothing. Outages, poison records and the DLQ are handled as
every service's are (`comfyserve.runtime.consumer`).
"""

from __future__ import annotations

import logging

import asyncpg
from aiokafka import ConsumerRecord  # type: ignore[import-untyped]
from aiokafka.errors import KafkaError  # type: ignore[import-untyped]
from faststream.kafka import KafkaBroker
from opentelemetry import trace
from opentelemetry.trace import SpanKind
from pydantic import ValidationError
from sqlalchemy.exc import DataError, IntegrityError, SQLAlchemyError

from comfyserve.contracts.events import (
    DeliveryDead,
    JobFinished,
    JobProgressed,
    JobStarted,
    dump_event,
)
from comfyserve.contracts.topics import DELIVERIES_DEAD
from comfyserve.notifier.deliveries.service import DeliveryService, JobEventIn
from comfyserve.notifier.settings import Settings
from comfyserve.notifier.telemetry import Metrics
from comfyserve.runtime.consumer import Poison, RecordHandler
from comfyserve.runtime.consumer import create_broker as runtime_broker
from comfyserve.runtime.kafka import check_size
from comfyserve.runtime.telemetry import context_from_headers, current_traceparent

# Outages: the record is retried. IntegrityError and DataError are the database
# refusing the record's values, which no retry changes; they become poison first.
_RETRYABLE = (SQLAlchemyError, asyncpg.PostgresError, OSError, KafkaError)


def create_broker(settings: Settings) -> KafkaBroker:
    return runtime_broker(
        settings.kafka_bootstrap_servers,
        client_id="comfyserve-notifier",
        logger=logging.getLogger(__name__),
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
    tracer: trace.Tracer,
) -> None:
    models: dict[str, type[JobEventIn]] = {
        settings.finished_topic: JobFinished,
        settings.started_topic: JobStarted,
        settings.progress_topic: JobProgressed,
    }

    async def apply(record: ConsumerRecord) -> None:
        # The span continues the event's trace; its context, stored on the
        # deliveries, is the parent of every later attempt.
        parent = context_from_headers(record.headers)
        with tracer.start_as_current_span(
            f"notifier.event.record {record.topic}",
            context=parent,
            kind=SpanKind.CONSUMER,
            attributes={"messaging.destination.name": record.topic},
        ) as span:
            traced = trace.get_current_span(parent).get_span_context().is_valid
            await record_one(record, span, current_traceparent() if traced else None)

    async def record_one(
        record: ConsumerRecord, span: trace.Span, traceparent: str | None
    ) -> None:
        try:
            event = models[record.topic].model_validate_json(record.value)
        except ValidationError as error:
            raise Poison(f"unparseable: {error.error_count()} errors") from error
        if event.tenant_id is None:
            raise Poison("tenant_id: missing")
        span.set_attributes(
            {"comfyserve.job.id": event.subject, "comfyserve.event.type": event.type}
        )
        try:
            new = await deliveries.record_event(event.tenant_id, event, traceparent)
        except (IntegrityError, DataError) as error:
            raise Poison(
                f"rejected by the database: {type(error.orig).__name__}"
            ) from error
        if new:
            metrics.recorded.labels(event.type).inc(new)

    handler = RecordHandler(
        broker,
        apply,
        service="notifier",
        errors=metrics.consumer_errors,
        retryable=_RETRYABLE,
    )
    handler.subscribe(
        *models,
        group_id=settings.consumer_group,
        auto_offset_reset=settings.first_start_offset,
        title="notifier.job_events",
    )
