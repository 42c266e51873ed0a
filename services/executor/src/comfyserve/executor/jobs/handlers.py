"""Kafka transport of the job path: decode a record, run it, commit its offset;
and the cancel broadcast."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import structlog
from opentelemetry import context, propagate
from pydantic import ValidationError

from comfyserve.contracts.events import JobCancelRequested, JobSubmitted, parse_event
from comfyserve.contracts.headers import headers_to_carrier
from comfyserve.contracts.topics import SUBMITTED_IN_DRAIN_ORDER, dlq
from comfyserve.executor.adapters.kafka import (
    KafkaPublisher,
    Message,
    SubmittedConsumer,
)
from comfyserve.executor.jobs.priority import Partition, PriorityPicker
from comfyserve.executor.jobs.service import JobRunner
from comfyserve.executor.telemetry import Metrics

log = structlog.get_logger(__name__)

_WAIT_MS = 500


class SubmittedLoop:
    """Takes one record at a time, highest priority first, and commits its
    offset only once the job's final event is acknowledged."""

    def __init__(
        self,
        consumer: SubmittedConsumer,
        runner: JobRunner,
        publisher: KafkaPublisher,
        metrics: Metrics,
        engine_ready: Callable[[], Awaitable[None]],
    ) -> None:
        self._consumer = consumer
        self._picker = PriorityPicker(consumer, SUBMITTED_IN_DRAIN_ORDER)
        self._runner = runner
        self._publisher = publisher
        self._metrics = metrics
        self._engine_ready = engine_ready
        self._idle = asyncio.Event()
        self._idle.set()
        self._stopping = False

    def stop_taking(self) -> None:
        self._stopping = True

    async def on_revoked(self, partitions: set[Partition]) -> None:
        # The partition must not move while its job runs or before its commit.
        await self._idle.wait()
        self._picker.forget(partitions)

    async def run(self) -> None:
        while not self._stopping:
            await self._engine_ready()
            message = await self._picker.next(_WAIT_MS)
            if message is None or self._stopping:
                # A record taken while stopping stays uncommitted: re-delivered.
                continue
            self._idle.clear()
            try:
                await self.process(message)
            finally:
                self._idle.set()

    async def process(self, message: Message) -> None:
        job = self._decode(message)
        if job is None:
            await self._publisher.publish_raw(dlq(message.topic), message)
            self._metrics.dead_letters.labels(message.topic).inc()
            await self._consumer.commit(message)
            return
        token = context.attach(propagate.extract(headers_to_carrier(message.headers)))
        self._metrics.busy.set(1)
        try:
            result = await self._runner.handle(job)
        finally:
            self._metrics.busy.set(0)
            context.detach(token)
        self._metrics.record(result)
        await self._consumer.commit(message)

    def _decode(self, message: Message) -> JobSubmitted | None:
        try:
            event = parse_event(message.value or b"")
        except ValidationError as exc:
            log.error(
                "executor.record.unreadable",
                topic=message.topic,
                partition=message.partition,
                offset=message.offset,
                errors=exc.error_count(),
            )
            return None
        if not isinstance(event, JobSubmitted):
            log.error(
                "executor.record.unexpected_type",
                topic=message.topic,
                offset=message.offset,
                type=event.type,
            )
            return None
        return event


async def follow_cancels(messages: AsyncIterator[Message], runner: JobRunner) -> None:
    """Every worker sees every cancel request; only the current job's is acted on."""
    async for message in messages:
        try:
            event = parse_event(message.value or b"")
        except ValidationError:
            log.warning("executor.cancel.unreadable", offset=message.offset)
            continue
        if isinstance(event, JobCancelRequested):
            runner.request_cancel(event.subject, event.data.reason, event.tenant_id)
