"""Kafka transport for `IngressService`: a FastStream subscriber on the
submit-requested topic, through the runtime's `RecordHandler`.

A record's offset is committed (FastStream's ack) only once its outcome is
durable: the job, its idempotency record and its outbox row committed, or its
`rejected` event acknowledged by every replica. An outage (database, auth
service, storage, no node catalog yet) nacks the record, which seeks back to
it: it is retried after a pause and nothing past it is committed. A record
that is not a command and names no request id goes to the topic's DLQ,
without its credential.
"""

from __future__ import annotations

import logging
from typing import Protocol

import asyncpg
import structlog
from aiokafka import ConsumerRecord  # type: ignore[import-untyped]
from aiokafka.errors import KafkaError  # type: ignore[import-untyped]
from faststream.kafka import KafkaBroker
from sqlalchemy.exc import SQLAlchemyError

from comfyserve.contracts.headers import (
    CONTENT_TYPE,
    EVENT_CONTENT_TYPE,
    headers_to_carrier,
)
from comfyserve.runtime.auth import AuthUnavailable
from comfyserve.runtime.consumer import (
    AUTHORIZATION,
    RETRY_SECONDS,
    Poison,
    RecordHandler,
)
from comfyserve.runtime.consumer import create_broker as runtime_broker
from comfyserve.runtime.grpc_auth import bearer_credential
from comfyserve.runtime.kafka import encode_event
from comfyserve.workflow.errors import (
    CatalogUnavailableError,
    StorageUnavailableError,
)
from comfyserve.workflow.ingress.service import Command, Outcome, Refused, Unreadable
from comfyserve.workflow.settings import Settings
from comfyserve.workflow.telemetry import Metrics

__all__ = ["create_broker", "subscribe"]

log = structlog.get_logger(__name__)

_RETRYABLE = (
    SQLAlchemyError,
    asyncpg.PostgresError,
    OSError,
    KafkaError,
    AuthUnavailable,
    CatalogUnavailableError,
    StorageUnavailableError,
)


class Ingress(Protocol):
    async def on_submit_requested(self, command: Command) -> Outcome: ...


def create_broker(settings: Settings) -> KafkaBroker:
    return runtime_broker(
        settings.kafka_bootstrap_servers,
        client_id="comfyserve-workflow-ingress",
        logger=logging.getLogger(__name__),
        # A rejected event counts as durable once every replica has it.
        acks="all",
    )


def subscribe(
    broker: KafkaBroker,
    settings: Settings,
    ingress: Ingress,
    metrics: Metrics,
    *,
    retry_seconds: float = RETRY_SECONDS,
) -> None:
    commands = SubmitCommands(broker, ingress, metrics)
    handler = RecordHandler(
        broker,
        commands.apply,
        service="workflow.ingress",
        errors=metrics.consumer_errors,
        retryable=_RETRYABLE,
        retry_seconds=retry_seconds,
    )
    handler.subscribe(
        settings.ingress_topic,
        group_id=settings.ingress_consumer_group,
        auto_offset_reset=settings.consumer_offset_reset,
        title="workflow.submit_requested",
    )


class SubmitCommands:
    def __init__(self, broker: KafkaBroker, ingress: Ingress, metrics: Metrics):
        self._broker = broker
        self._ingress = ingress
        self._metrics = metrics

    async def apply(self, record: ConsumerRecord) -> None:
        headers = headers_to_carrier(record.headers)
        command = Command(
            value=record.value or b"",
            key=record.key,
            credential=bearer_credential(headers.get(AUTHORIZATION, "")),
        )
        outcome = await self._ingress.on_submit_requested(command)
        if isinstance(outcome, Unreadable):
            raise Poison(outcome.reason)
        if isinstance(outcome, Refused):
            await self._publish_rejected(outcome, record)
            return
        label = "replayed" if outcome.replayed else "accepted"
        self._metrics.ingress_commands.labels(label).inc()

    async def _publish_rejected(self, outcome: Refused, record: ConsumerRecord) -> None:
        event = outcome.event
        topic, value = encode_event(event)
        await self._broker.publish(
            value,
            topic=topic,
            key=event.subject.encode(),
            headers={CONTENT_TYPE: EVENT_CONTENT_TYPE},
        )
        self._metrics.ingress_commands.labels("rejected").inc()
        log.info(
            "workflow.ingress.rejected",
            request_id=event.data.request_id,
            tenant_id=event.tenant_id,
            code=event.data.code.value,
            offset=record.offset,
        )
