"""aiokafka behind small typed classes: the producer of every event of this
worker, and the cancel broadcast consumer."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer  # type: ignore[import-untyped]
from aiokafka.errors import KafkaError  # type: ignore[import-untyped]
from opentelemetry import propagate

from comfyserve.contracts.events import Event
from comfyserve.contracts.headers import event_headers
from comfyserve.runtime.kafka import (
    PRODUCER_MAX_REQUEST_BYTES,
    RenewingProducer,
    encode_event,
)

log = structlog.get_logger(__name__)

_RETRY_FIRST_S = 0.5
_RETRY_MAX_S = 10.0


@dataclass(frozen=True, slots=True)
class Message:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]


def _message(record: Any) -> Message:
    return Message(
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        key=record.key,
        value=record.value,
        headers=tuple(record.headers or ()),
    )


class KafkaPublisher:
    """One idempotent producer (acks=all) for every event of this worker.

    `publish` outlasts a broker outage: it retries until Kafka has the event,
    so a finished job's outcome is never thrown away because the broker was
    away for a while, nor because it came back without the producer's state
    (the producer renews itself then).
    """

    def __init__(
        self,
        bootstrap_servers: str,
        client_id: str,
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        producer: Any = None,
    ) -> None:
        # `producer` replaces aiokafka's in unit tests; none is built then.
        if producer is None:
            producer = RenewingProducer(
                lambda: AIOKafkaProducer(
                    bootstrap_servers=bootstrap_servers,
                    client_id=client_id,
                    enable_idempotence=True,
                    acks="all",
                    # latency first; sends queued during a request still batch
                    linger_ms=0,
                    max_request_size=PRODUCER_MAX_REQUEST_BYTES,
                )
            )
        self._producer = producer
        self._sleep = sleep

    async def start(self) -> None:
        await self._producer.start()

    async def stop(self) -> None:
        await self._producer.stop()

    async def publish(self, event: Event) -> None:
        delay = _RETRY_FIRST_S
        tries = 0
        while True:
            tries += 1
            try:
                await (await self.enqueue(event))
            except KafkaError as exc:
                log.warning(
                    "executor.event.publish_retry",
                    event_type=event.type,
                    subject=event.subject,
                    tries=tries,
                    error=repr(exc),
                )
                await self._sleep(delay)
                delay = min(delay * 2, _RETRY_MAX_S)
                continue
            return

    async def enqueue(self, event: Event) -> Awaitable[object]:
        # `send` returns once the record sits in its partition's batch queue, so
        # records enqueued one after another keep their order; the idempotent
        # producer keeps it through retries.
        topic, value = encode_event(event)
        carrier: dict[str, str] = {}
        propagate.inject(carrier)
        delivery: Awaitable[object] = await self._producer.send(
            topic,
            value=value,
            key=event.subject.encode(),
            headers=event_headers(carrier),
        )
        return delivery


class BroadcastConsumer:
    """Reads a topic from its end without a consumer group: every worker sees
    every record published while it runs."""

    def __init__(self, bootstrap_servers: str, client_id: str, topic: str) -> None:
        self._consumer = AIOKafkaConsumer(
            topic,
            bootstrap_servers=bootstrap_servers,
            client_id=client_id,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="latest",
        )

    async def start(self) -> None:
        await self._consumer.start()

    async def stop(self) -> None:
        await self._consumer.stop()

    async def messages(self) -> AsyncIterator[Message]:
        async for record in self._consumer:
            yield _message(record)
