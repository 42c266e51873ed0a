"""Kafka transport for `IngressService`: a FastStream subscriber on the
submit-requested topic.

A record's offset is committed (FastStream's ack) only once its outcome is
durable: the job, its idempotency record and its outbox row committed, or its
`rejected` event acknowledged by the brokers. An outage (database, auth
service, storage, no node catalog yet) nacks the record, which seeks back to
it: it is retried after a pause and nothing past it is committed. A record
that is not a command and names no request id goes to the topic's DLQ.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Annotated, Protocol

import asyncpg
import structlog
from aiokafka import ConsumerRecord  # type: ignore[import-untyped]
from aiokafka.errors import KafkaError  # type: ignore[import-untyped]
from faststream import AckPolicy, Context
from faststream.exceptions import NackMessage
from faststream.kafka import KafkaBroker, Topic
from faststream.message import StreamMessage
from sqlalchemy.exc import SQLAlchemyError

from comfyserve.contracts.headers import (
    CONTENT_TYPE,
    EVENT_CONTENT_TYPE,
    headers_to_carrier,
)
from comfyserve.contracts.topics import dlq
from comfyserve.runtime.auth import AuthUnavailable
from comfyserve.runtime.grpc_auth import bearer_credential
from comfyserve.runtime.kafka import (
    DLQ_REASON_HEADER,
    FETCH_MAX_BYTES,
    PRODUCER_MAX_REQUEST_BYTES,
    encode_event,
)
from comfyserve.runtime.logging import describe_error
from comfyserve.workflow.errors import (
    CatalogUnavailableError,
    StorageUnavailableError,
)
from comfyserve.workflow.ingress.service import (
    Accepted,
    Command,
    Outcome,
    Refused,
    Unreadable,
)
from comfyserve.workflow.settings import Settings
from comfyserve.workflow.telemetry import Metrics

__all__ = ["AUTHORIZATION_HEADER", "Record", "create_broker", "subscribe"]

log = structlog.get_logger(__name__)

AUTHORIZATION_HEADER = "authorization"
"""`Bearer <API key or access token>`: the producer's credential."""

RETRY_SECONDS = 1.0
# Runs of a record whose handler fails unexpectedly (a bug) before it goes to
# the DLQ: it must neither loop forever nor hold up the records behind it.
HANDLER_ATTEMPTS = 3
_RETRYABLE = (
    SQLAlchemyError,
    asyncpg.PostgresError,
    OSError,
    KafkaError,
    AuthUnavailable,
    CatalogUnavailableError,
    StorageUnavailableError,
)

# The subscriber is not a batch one: its message carries one record.
Record = Annotated[ConsumerRecord, Context("message.raw_message")]


class Ingress(Protocol):
    async def on_submit_requested(self, command: Command) -> Outcome: ...


def create_broker(settings: Settings) -> KafkaBroker:
    return KafkaBroker(
        settings.kafka_bootstrap_servers,
        client_id="comfyserve-workflow-ingress",
        # A rejected event counts as durable once every replica has it.
        acks="all",
        enable_idempotence=True,
        max_request_size=PRODUCER_MAX_REQUEST_BYTES,
        # Through the service's own logging set-up (format, redaction).
        logger=logging.getLogger(__name__),
        log_level=logging.DEBUG,
    )


def subscribe(
    broker: KafkaBroker,
    settings: Settings,
    ingress: Ingress,
    metrics: Metrics,
    *,
    retry_seconds: float = RETRY_SECONDS,
) -> None:
    handler = SubmitHandler(broker, ingress, metrics, retry_seconds)
    broker.subscriber(
        # Provisioned with its size limit: never created with broker defaults.
        Topic(settings.ingress_topic, declare=False),
        group_id=settings.ingress_consumer_group,
        ack_policy=AckPolicy.NACK_ON_ERROR,
        auto_offset_reset=settings.consumer_offset_reset,
        max_partition_fetch_bytes=FETCH_MAX_BYTES,
        decoder=_raw_body,
        title="workflow.submit_requested",
    )(handler.on_submit_requested)


async def _raw_body(message: StreamMessage[object]) -> bytes:
    # A record that is not JSON must reach the service, to be refused there.
    return message.body


class SubmitHandler:
    def __init__(
        self,
        broker: KafkaBroker,
        ingress: Ingress,
        metrics: Metrics,
        retry_seconds: float,
    ) -> None:
        self._broker = broker
        self._ingress = ingress
        self._metrics = metrics
        self._retry_seconds = retry_seconds
        self._failures: dict[tuple[str, int, int], int] = {}

    async def on_submit_requested(self, body: bytes, record: Record) -> None:
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

    async def _handle(self, body: bytes, record: ConsumerRecord) -> None:
        headers = headers_to_carrier(record.headers)
        command = Command(
            value=body,
            key=record.key,
            credential=bearer_credential(headers.get(AUTHORIZATION_HEADER, "")),
        )
        outcome = await self._ingress.on_submit_requested(command)
        if isinstance(outcome, Unreadable):
            await self._dead_letter(record, outcome.reason)
            return
        if isinstance(outcome, Refused):
            await self._publish_rejected(outcome, record)
            return
        self._count(outcome)

    def _count(self, outcome: Accepted) -> None:
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

    async def _retry_later(self, record: ConsumerRecord, error: Exception) -> None:
        self._metrics.consumer_errors.labels("retried").inc()
        log.warning(
            "workflow.ingress.retry",
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            error=describe_error(error),
        )
        # The pause keeps an outage from turning into a busy loop of retries.
        await asyncio.sleep(self._retry_seconds)
        raise NackMessage() from error

    async def _dead_letter(self, record: ConsumerRecord, reason: str) -> None:
        headers = headers_to_carrier(record.headers)
        # The credential is not carried on: the DLQ is read by operators.
        headers.pop(AUTHORIZATION_HEADER, None)
        headers[DLQ_REASON_HEADER] = reason
        await self._broker.publish(
            record.value, topic=dlq(record.topic), key=record.key, headers=headers
        )
        self._metrics.consumer_errors.labels("dead_lettered").inc()
        self._metrics.ingress_commands.labels("dead_lettered").inc()
        log.warning(
            "workflow.ingress.dead_lettered",
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            reason=reason,
        )
