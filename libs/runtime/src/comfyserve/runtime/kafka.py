"""Kafka settings derived from the contracts' size limits, so producers, topics
and consumers agree on the largest record."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from typing import Any, Protocol, TypeVar

import structlog
from aiokafka.errors import (  # type: ignore[import-untyped]
    InvalidProducerEpoch,
    KafkaError,
    OutOfOrderSequenceNumber,
    ProducerFenced,
    UnknownProducerId,
)

from comfyserve.contracts.events import Event, dump_event
from comfyserve.contracts.limits import CATALOG_MAX_BYTES
from comfyserve.contracts.topics import TopicSpec, max_message_bytes, topic_for

__all__ = [
    "BATCH_OVERHEAD_BYTES",
    "DLQ_REASON_HEADER",
    "EventTooLargeError",
    "FETCH_MAX_BYTES",
    "PRODUCER_MAX_REQUEST_BYTES",
    "RenewingProducer",
    "check_size",
    "dead_letter_headers",
    "encode_event",
    "started",
    "topic_config",
]

DLQ_REASON_HEADER = "dlq-reason"
"""Why a record was moved to `<topic>.dlq`; the original headers stay beside it."""

BATCH_OVERHEAD_BYTES = 16 * 1024
"""Room for record and batch headers above a record's payload: topics accept
`max_message_bytes + BATCH_OVERHEAD_BYTES`, so any record that passes
`check_size` is one the broker takes."""

PRODUCER_MAX_REQUEST_BYTES = CATALOG_MAX_BYTES + BATCH_OVERHEAD_BYTES
"""`max_request_size` of every producer: the largest topic's limit."""

FETCH_MAX_BYTES = CATALOG_MAX_BYTES + BATCH_OVERHEAD_BYTES
"""`max_partition_fetch_bytes` of every consumer, so no record is unfetchable."""


class EventTooLargeError(ValueError):
    """A record is larger than its topic accepts: sending it can never succeed."""

    def __init__(self, topic: str, size: int, limit: int) -> None:
        super().__init__(
            f"a record of {size} bytes is larger than topic {topic} accepts "
            f"({limit} bytes)"
        )
        self.topic = topic
        self.size = size
        self.limit = limit


def check_size(
    topic: str,
    value: bytes,
    key: bytes | None = None,
    headers: Iterable[tuple[str, bytes]] = (),
) -> None:
    """Raise `EventTooLargeError` unless the record fits its topic."""
    size = len(value) + len(key or b"") + sum(len(k) + len(v) for k, v in headers)
    limit = max_message_bytes(topic)
    if size > limit:
        raise EventTooLargeError(topic, size, limit)


def encode_event(event: Event) -> tuple[str, bytes]:
    """The topic and value of `event`, refused here when it cannot fit."""
    topic = topic_for(event)
    value = dump_event(event)
    check_size(topic, value, event.subject.encode())
    return topic, value


def topic_config(spec: TopicSpec) -> Mapping[str, str]:
    """The broker-side configuration of a topic (and of its DLQ)."""
    config = {"max.message.bytes": str(spec.max_message_bytes + BATCH_OVERHEAD_BYTES)}
    if spec.compacted:
        config["cleanup.policy"] = "compact"
    return config


def dead_letter_headers(
    headers: Iterable[tuple[str, bytes]] | None, reason: str
) -> list[tuple[str, bytes]]:
    """A dead-lettered record's headers: its own, and why it was moved."""
    kept = [(k, v) for k, v in headers or () if k != DLQ_REASON_HEADER]
    return [*kept, (DLQ_REASON_HEADER, reason.encode())]


class _Client(Protocol):
    async def start(self) -> Any: ...

    async def stop(self) -> Any: ...


C = TypeVar("C", bound=_Client)


@asynccontextmanager
async def started(client: C) -> AsyncIterator[C]:
    """A Kafka producer, consumer or broker, started, and stopped on exit."""
    await client.start()
    try:
        yield client
    finally:
        await client.stop()


log = structlog.get_logger(__name__)

_PRODUCER_STATE_LOST = (
    OutOfOrderSequenceNumber,
    ProducerFenced,
    InvalidProducerEpoch,
    UnknownProducerId,
)
"""Errors after which an idempotent aiokafka producer never sends again: its
sender task has died (a broker that restarted uncleanly forgot the producer's
sequence numbers, or fenced its epoch), and every later send fails with the
same error. Only a new producer, with a new producer id, can send."""

_STOP_FAILED_S = 5.0


class RenewingProducer:
    """An idempotent producer that replaces itself when it loses its state.

    It has `AIOKafkaProducer`'s `send`; the send or delivery that meets the
    lost state still fails (the caller retries it, as after any Kafka error),
    and the next one goes through a fresh producer. Consumers de-duplicate on
    event ids, so a record the dead producer did write is harmless twice.
    """

    def __init__(self, make: Callable[[], Any]) -> None:
        self._make = make
        self._producer = make()
        self._renewing = asyncio.Lock()

    async def start(self) -> None:
        await self._producer.start()

    async def stop(self) -> None:
        await self._producer.stop()

    async def send(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> Awaitable[object]:
        producer = self._producer
        try:
            delivery: Awaitable[object] = await producer.send(
                topic, value=value, key=key, headers=headers
            )
        except _PRODUCER_STATE_LOST as error:
            await self._renew(producer, error)
            raise
        return self._settle(producer, delivery)

    async def _settle(self, producer: Any, delivery: Awaitable[object]) -> object:
        try:
            return await delivery
        except _PRODUCER_STATE_LOST as error:
            await self._renew(producer, error)
            raise

    async def _renew(self, failed: Any, error: KafkaError) -> None:
        async with self._renewing:
            if self._producer is not failed:
                return  # another send already replaced it
            fresh = self._make()
            try:
                await fresh.start()
            except KafkaError as start_error:
                # The broker is away: keep the failed producer, so the next
                # send fails the same way and tries again.
                log.warning("kafka.producer.renew_failed", error=repr(start_error))
                with contextlib.suppress(Exception):
                    await fresh.stop()
                return
            self._producer = fresh
            log.warning("kafka.producer.renewed", reason=repr(error))
        with contextlib.suppress(Exception):
            await asyncio.wait_for(failed.stop(), _STOP_FAILED_S)
