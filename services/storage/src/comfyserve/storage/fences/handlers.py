"""Kafka transport for fencing: a FastStream subscriber on the finished topic.

Each record is handled, then its offset committed. A database or Kafka outage
is retried, a record that can never apply goes to the topic's DLQ, as every
service's subscriber does (`comfyserve.runtime.consumer`).
"""

from __future__ import annotations

import logging
from typing import Protocol

import asyncpg
from aiokafka import ConsumerRecord  # type: ignore[import-untyped]
from aiokafka.errors import KafkaError  # type: ignore[import-untyped]
from faststream.kafka import KafkaBroker
from pydantic import ValidationError
from sqlalchemy.exc import DataError, IntegrityError, SQLAlchemyError

from comfyserve.contracts.events import JobFinished
from comfyserve.runtime.consumer import (
    RETRY_SECONDS,
    Poison,
    Record,
    RecordHandler,
)
from comfyserve.runtime.consumer import create_broker as runtime_broker
from comfyserve.storage.errors import InvalidArgument
from comfyserve.storage.fences.models import FenceReport, FinishedJob
from comfyserve.storage.objects import ObjectStoreError
from comfyserve.storage.settings import Settings
from comfyserve.storage.telemetry import Metrics

# Outages, of the object store too (the ending attempt's outputs are checked
# there): the record is retried. IntegrityError and DataError are the database
# refusing the record's values, which no retry changes; they become poison first.
_RETRYABLE = (
    SQLAlchemyError,
    asyncpg.PostgresError,
    OSError,
    KafkaError,
    ObjectStoreError,
)

__all__ = ["FinishedHandler", "FinishedJobs", "Record", "create_broker", "subscribe"]


class FinishedJobs(Protocol):
    async def on_job_finished(self, finished: FinishedJob) -> FenceReport: ...


def create_broker(settings: Settings) -> KafkaBroker:
    return runtime_broker(
        settings.kafka_bootstrap_servers,
        client_id="comfyserve-storage",
        logger=logging.getLogger(__name__),
    )


def subscribe(
    broker: KafkaBroker,
    settings: Settings,
    jobs: FinishedJobs,
    metrics: Metrics,
    *,
    retry_seconds: float = RETRY_SECONDS,
) -> None:
    handler = RecordHandler(
        broker,
        FinishedHandler(jobs, metrics).apply,
        service="storage",
        errors=metrics.consumer_errors,
        retryable=_RETRYABLE,
        retry_seconds=retry_seconds,
    )
    handler.subscribe(
        settings.finished_topic,
        group_id=settings.consumer_group,
        auto_offset_reset=settings.first_start_offset,
        title="storage.job_finished",
    )


class FinishedHandler:
    def __init__(self, jobs: FinishedJobs, metrics: Metrics) -> None:
        self._jobs = jobs
        self._metrics = metrics

    async def apply(self, record: ConsumerRecord) -> None:
        report = await self._fence(record.value)
        self._metrics.fenced_jobs.inc()
        self._metrics.superseded_deleted.inc(report.deleted)

    async def _fence(self, body: bytes) -> FenceReport:
        try:
            event = JobFinished.model_validate_json(body)
        except ValidationError as error:
            raise Poison(f"unparseable: {error.error_count()} errors") from error
        if event.tenant_id is None:
            raise Poison("tenant_id: missing")
        try:
            return await self._jobs.on_job_finished(
                FinishedJob(
                    job_id=event.subject,
                    tenant_id=event.tenant_id,
                    attempt=event.data.attempt,
                )
            )
        except InvalidArgument as error:
            raise Poison(error.message) from error
        except (IntegrityError, DataError) as error:
            raise Poison(
                f"rejected by the database: {type(error.orig).__name__}"
            ) from error
