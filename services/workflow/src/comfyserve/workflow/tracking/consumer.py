"""Kafka transport for `EventTracker`: a consumer group over the executor topics.

A fetched batch is applied together, in one transaction for its job events
(the tracker groups them by job); unparseable records go to their DLQ once it
committed. Should the batch fail as a whole, it is applied again record by
record, which finds the record at fault: events apply once by id, so whatever
a batch did apply is a duplicate the second time.

Offsets are committed by hand after the records' transactions committed, once
per fetched batch and without holding up the next batch. A database failure
seeks back and retries the record (nothing is lost, nothing committed); a
record that can never apply (unparseable, or rejected by the database as data)
goes to its topic's DLQ and is committed. A record whose handler fails
unexpectedly (a bug) is retried a few times, then dead-lettered, so it neither
loops forever nor skips the records behind it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, Protocol

import asyncpg
import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition  # type: ignore[import-untyped]
from aiokafka.errors import CommitFailedError, KafkaError  # type: ignore[import-untyped]
from pydantic import ValidationError
from sqlalchemy.exc import DataError, IntegrityError, SQLAlchemyError

from comfyserve.contracts.events import AnyEvent, parse_event
from comfyserve.contracts.topics import HEARTBEAT, JOB_EVENT_TOPICS, NODE_CATALOG, dlq
from comfyserve.runtime.kafka import FETCH_MAX_BYTES, dead_letter_headers
from comfyserve.runtime.logging import describe_error
from comfyserve.workflow.telemetry import Metrics
from comfyserve.workflow.tracking.service import Outcome

log = structlog.get_logger(__name__)

TOPICS: tuple[str, ...] = (*JOB_EVENT_TOPICS, HEARTBEAT, NODE_CATALOG)

_RETRY_SECONDS = 1.0
_HANDLER_ATTEMPTS = 3


def create_consumer(bootstrap_servers: str, group_id: str, offset_reset: str) -> Any:
    return AIOKafkaConsumer(
        *TOPICS,
        bootstrap_servers=bootstrap_servers,
        group_id=group_id,
        enable_auto_commit=False,
        auto_offset_reset=offset_reset,
        max_partition_fetch_bytes=FETCH_MAX_BYTES,
    )


class EventHandler(Protocol):
    async def on_event(self, event: AnyEvent) -> Outcome: ...

    async def on_events(self, events: Sequence[AnyEvent]) -> list[Outcome]: ...


class _Poison(Exception):
    """A record that can never be applied."""


class EventConsumer:
    def __init__(
        self, *, consumer: Any, producer: Any, tracker: EventHandler, metrics: Metrics
    ) -> None:
        self._consumer = consumer
        self._producer = producer
        self._tracker = tracker
        self._metrics = metrics
        self._committing: asyncio.Task[None] | None = None
        # Failed handler runs per record not yet dead-lettered or applied.
        self._failures: dict[tuple[str, int, int], int] = {}

    async def run(self) -> None:
        """Consume until cancelled."""
        try:
            while True:
                batch: dict[TopicPartition, list[Any]] = await self._consumer.getmany(
                    timeout_ms=1000, max_records=200
                )
                if not await self.consume(batch):
                    await asyncio.sleep(_RETRY_SECONDS)
        finally:
            await self.flush()

    async def consume(self, batch: dict[TopicPartition, list[Any]]) -> bool:
        """Apply a fetched batch and start committing what was applied; False
        when a record failed and was sought back for a retry."""
        offsets: dict[TopicPartition, int] = {}
        complete = True
        if await self._apply_together(batch):
            offsets = {p: rs[-1].offset + 1 for p, rs in batch.items() if rs}
        else:
            for partition, records in batch.items():
                handled = await self._process(partition, records)
                if handled:
                    offsets[partition] = records[handled - 1].offset + 1
                complete = complete and handled == len(records)
        if offsets:
            # One commit per batch, sent while the next batch is fetched and
            # applied: each job's events no longer wait on a commit round trip
            # each. The previous commit ends first, so offsets only move forward.
            await self.flush()
            self._committing = asyncio.create_task(self._commit(offsets))
        return complete

    async def _apply_together(self, batch: dict[TopicPartition, list[Any]]) -> bool:
        """True once the whole batch is applied and its poison dead-lettered;
        False (nothing of it committed, or all of it) when it must go record
        by record. A single record goes that way at once."""
        records = [record for records in batch.values() for record in records]
        if len(records) < 2:
            return False
        events: list[AnyEvent] = []
        poison: list[tuple[Any, str]] = []
        for record in records:
            try:
                events.append(parse_event(record.value or b""))
            except ValidationError as error:
                poison.append((record, f"unparseable: {error.error_count()} errors"))
        try:
            await self._tracker.on_events(events)
            for record, reason in poison:
                await self._dead_letter(record, reason)
        # Any failure, expected or a bug: the records one by one tell which
        # record it was and whether to retry, dead-letter or wait.
        except Exception as error:
            log.info(
                "workflow.consumer.batch_failed",
                records=len(records),
                error=describe_error(error),
            )
            return False
        for record in records:
            self._failures.pop((record.topic, record.partition, record.offset), None)
        return True

    async def flush(self) -> None:
        """Waits for the commit in flight, if any."""
        if self._committing is not None:
            await asyncio.wait([self._committing])
            self._committing = None

    async def _process(self, partition: TopicPartition, records: list[Any]) -> int:
        """Handle records in order; the count handled."""
        handled = 0
        for record in records:
            try:
                await self._handle(record)
            except (
                SQLAlchemyError,
                OSError,
                asyncpg.PostgresError,
                KafkaError,
            ) as error:
                self._metrics.consumer_errors.labels("retried").inc()
                log.warning(
                    "workflow.consumer.retry",
                    topic=record.topic,
                    partition=record.partition,
                    offset=record.offset,
                    error=describe_error(error),
                )
                self._consumer.seek(partition, record.offset)
                break
            except Exception as error:
                if not await self._after_handler_failure(record, error):
                    self._consumer.seek(partition, record.offset)
                    break
            handled += 1
        return handled

    async def _after_handler_failure(self, record: Any, error: Exception) -> bool:
        """True once the record is dead-lettered: it failed too often."""
        where = (record.topic, record.partition, record.offset)
        failures = self._failures.get(where, 0) + 1
        log.error(
            "workflow.consumer.handler_failed",
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            failures=failures,
            error=describe_error(error),
        )
        if failures < _HANDLER_ATTEMPTS:
            self._failures[where] = failures
            self._metrics.consumer_errors.labels("retried").inc()
            return False
        self._failures.pop(where, None)
        await self._dead_letter(
            record, f"handler failed {failures} times: {type(error).__name__}"
        )
        return True

    async def _handle(self, record: Any) -> None:
        try:
            await self._apply(record)
        except _Poison as poison:
            await self._dead_letter(record, str(poison))
        self._failures.pop((record.topic, record.partition, record.offset), None)

    async def _apply(self, record: Any) -> None:
        try:
            event = parse_event(record.value or b"")
        except ValidationError as error:
            raise _Poison(f"unparseable: {error.error_count()} errors") from error
        try:
            await self._tracker.on_event(event)
        except (IntegrityError, DataError) as error:
            raise _Poison(
                f"rejected by the database: {type(error.orig).__name__}"
            ) from error

    async def _dead_letter(self, record: Any, reason: str) -> None:
        headers = dead_letter_headers(record.headers, reason)
        await (
            await self._producer.send(
                dlq(record.topic), value=record.value, key=record.key, headers=headers
            )
        )
        self._metrics.consumer_errors.labels("dead_lettered").inc()
        log.warning(
            "workflow.consumer.dead_lettered",
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            reason=reason,
        )

    async def _commit(self, offsets: dict[TopicPartition, int]) -> None:
        try:
            await self._consumer.commit(offsets)
        except CommitFailedError as error:
            # The partition moved to another instance during a rebalance; it
            # re-reads these records and de-duplicates them by event id.
            log.warning("workflow.consumer.commit_failed", error=describe_error(error))
        except KafkaError as error:
            # The next batch's commit carries these offsets too; until then a
            # restart only re-reads records, which apply once by event id.
            log.warning("workflow.consumer.commit_failed", error=repr(error))
