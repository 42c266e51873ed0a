"""Kafka transport for fencing: a FastStream subscriber on the finished topic.

Each record is handled, then its offset committed (FastStream's ack). A database
or Kafka outage nacks the record, which seeks back to it: it is retried after a
pause and nothing past it is committed. A record that can never apply goes to
the topic's DLQ, with a `dlq-reason` header, and is committed.
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
from pydantic import ValidationError
from sqlalchemy.exc import DataError, IntegrityError, SQLAlchemyError

from comfyserve.contracts.events import JobFinished
from comfyserve.contracts.headers import headers_to_carrier
from comfyserve.contracts.topics import dlq
from comfyserve.runtime.kafka import (
    DLQ_REASON_HEADER,
    FETCH_MAX_BYTES,
    PRODUCER_MAX_REQUEST_BYTES,
)
from comfyserve.runtime.logging import describe_error
from comfyserve.storage.errors import InvalidArgument
from comfyserve.storage.fences.models import FenceReport, FinishedJob
from comfyserve.storage.settings import Settings
from comfyserve.storage.telemetry import Metrics

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


class FinishedJobs(Protocol):
    async def on_job_finished(self, finished: FinishedJob) -> FenceReport: ...


class _Poison(Exception):
    """A record that can never be applied."""


def create_broker(settings: Settings) -> KafkaBroker:
    return KafkaBroker(
        settings.kafka_bootstrap_servers,
        client_id="comfyserve-storage",
        max_request_size=PRODUCER_MAX_REQUEST_BYTES,
        # A plain library logger: its lines go through the service's logging
        # set-up (format, redaction) instead of a handler of FastStream's own.
        logger=logging.getLogger(__name__),
        # FastStream logs every record at this level; our own lines say more.
        log_level=logging.DEBUG,
    )


def subscribe(
    broker: KafkaBroker,
    settings: Settings,
    jobs: FinishedJobs,
    metrics: Metrics,
    *,
    retry_seconds: float = RETRY_SECONDS,
) -> None:
    handler = FinishedHandler(broker, jobs, metrics, retry_seconds)
    broker.subscriber(
        # The workflow service's topic, provisioned with its partitions and
        # limits: a consumer must never create it with a broker's defaults.
        Topic(settings.finished_topic, declare=False),
        group_id=settings.consumer_group,
        ack_policy=AckPolicy.NACK_ON_ERROR,
        # A new group starts from the oldest record: a missed end leaves a
        # losing attempt's outputs in place.
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=FETCH_MAX_BYTES,
        decoder=_raw_body,
        title="storage.job_finished",
    )(handler.on_job_finished)


async def _raw_body(message: StreamMessage[object]) -> bytes:
    # FastStream would decode JSON before the handler runs, and a record that is
    # not JSON would then fail forever instead of reaching the DLQ.
    return message.body


class FinishedHandler:
    def __init__(
        self,
        broker: KafkaBroker,
        jobs: FinishedJobs,
        metrics: Metrics,
        retry_seconds: float,
    ) -> None:
        self._broker = broker
        self._jobs = jobs
        self._metrics = metrics
        self._retry_seconds = retry_seconds
        self._failures: dict[tuple[str, int, int], int] = {}

    async def on_job_finished(self, body: bytes, record: Record) -> None:
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
            "storage.consumer.retry",
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
            report = await self._apply(body)
        except _Poison as poison:
            await self._dead_letter(record, str(poison))
            return
        self._metrics.fenced_jobs.inc()
        self._metrics.superseded_deleted.inc(report.deleted)

    async def _apply(self, body: bytes) -> FenceReport:
        try:
            event = JobFinished.model_validate_json(body)
        except ValidationError as error:
            raise _Poison(f"unparseable: {error.error_count()} errors") from error
        if event.tenant_id is None:
            raise _Poison("tenant_id: missing")
        try:
            return await self._jobs.on_job_finished(
                FinishedJob(
                    job_id=event.subject,
                    tenant_id=event.tenant_id,
                    attempt=event.data.attempt,
                )
            )
        except InvalidArgument as error:
            raise _Poison(error.message) from error
        except (IntegrityError, DataError) as error:
            raise _Poison(
                f"rejected by the database: {type(error.orig).__name__}"
            ) from error

    async def _dead_letter(self, record: ConsumerRecord, reason: str) -> None:
        headers = headers_to_carrier(record.headers)
        headers[DLQ_REASON_HEADER] = reason
        await self._broker.publish(
            record.value, topic=dlq(record.topic), key=record.key, headers=headers
        )
        self._metrics.consumer_errors.labels("dead_lettered").inc()
        log.warning(
            "storage.consumer.dead_lettered",
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            reason=reason,
        )
