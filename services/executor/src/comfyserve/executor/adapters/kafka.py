"""aiokafka behind small typed classes: the producer, the submitted-topics
consumer (manual commits, priority reads) and the cancel broadcast consumer."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any

import structlog
from aiokafka import (  # type: ignore[import-untyped]
    AIOKafkaConsumer,
    AIOKafkaProducer,
    ConsumerRebalanceListener,
)
from aiokafka.errors import KafkaError  # type: ignore[import-untyped]
from aiokafka.structs import TopicPartition  # type: ignore[import-untyped]
from opentelemetry import propagate

from comfyserve.contracts.events import Event, dump_event
from comfyserve.contracts.headers import event_headers
from comfyserve.contracts.topics import SUBMITTED_IN_DRAIN_ORDER, topic_for
from comfyserve.executor.jobs.priority import Partition

log = structlog.get_logger(__name__)

_SESSION_TIMEOUT_MS = 10_000
_HEARTBEAT_INTERVAL_MS = 1_000


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
    """One idempotent producer (acks=all) for every event of this worker."""

    def __init__(self, bootstrap_servers: str, client_id: str) -> None:
        self._producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap_servers,
            client_id=client_id,
            enable_idempotence=True,
            acks="all",
            linger_ms=0,  # latency first; sends queued during a request still batch
        )

    async def start(self) -> None:
        await self._producer.start()

    async def stop(self) -> None:
        await self._producer.stop()

    async def publish(self, event: Event) -> None:
        await (await self.enqueue(event))

    async def enqueue(self, event: Event) -> Awaitable[object]:
        # `send` returns once the record sits in its partition's batch queue, so
        # records enqueued one after another keep their order; the idempotent
        # producer keeps it through retries.
        carrier: dict[str, str] = {}
        propagate.inject(carrier)
        delivery: Awaitable[object] = await self._producer.send(
            topic_for(event),
            value=dump_event(event),
            key=event.subject.encode(),
            headers=event_headers(carrier),
        )
        return delivery

    async def publish_raw(self, topic: str, message: Message) -> None:
        await self._producer.send_and_wait(
            topic, value=message.value, key=message.key, headers=list(message.headers)
        )


class _RevokeListener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, on_revoked: Callable[[set[Partition]], Awaitable[None]]):
        self._on_revoked = on_revoked

    async def on_partitions_revoked(self, revoked: Collection[Any]) -> None:
        partitions = {(tp.topic, tp.partition) for tp in revoked}
        log.info("executor.kafka.revoking", partitions=sorted(partitions))
        await self._on_revoked(partitions)

    async def on_partitions_assigned(self, assigned: Collection[Any]) -> None:
        log.info(
            "executor.kafka.assigned",
            partitions=sorted((tp.topic, tp.partition) for tp in assigned),
        )


class SubmittedConsumer:
    """The `submitted` topics in one consumer group, committed by hand.

    A job may run for the executor's longest timeout between two reads, so the
    poll interval, and the rebalance timeout (the revoke callback waits for the
    running job), are set above it.
    """

    def __init__(
        self,
        bootstrap_servers: str,
        group_id: str,
        client_id: str,
        max_poll_interval_ms: int,
        on_revoked: Callable[[set[Partition]], Awaitable[None]],
        topics: Sequence[str] = SUBMITTED_IN_DRAIN_ORDER,
    ) -> None:
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap_servers,
            group_id=group_id,
            client_id=client_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_interval_ms=max_poll_interval_ms,
            rebalance_timeout_ms=max_poll_interval_ms,
            session_timeout_ms=_SESSION_TIMEOUT_MS,
            heartbeat_interval_ms=_HEARTBEAT_INTERVAL_MS,
        )
        self._topics = list(topics)
        self._listener = _RevokeListener(on_revoked)
        self._started = False

    @property
    def started(self) -> bool:
        return self._started

    async def start(self) -> None:
        self._consumer.subscribe(self._topics, listener=self._listener)
        await self._consumer.start()
        self._started = True

    async def stop(self) -> None:
        self._started = False
        await self._consumer.stop()

    def assignment(self) -> set[Partition]:
        return {(tp.topic, tp.partition) for tp in self._consumer.assignment()}

    async def take(
        self, partitions: Sequence[Partition], timeout_ms: int
    ) -> Message | None:
        batch = await self._consumer.getmany(
            *(TopicPartition(topic, partition) for topic, partition in partitions),
            timeout_ms=timeout_ms,
            max_records=1,
        )
        for records in batch.values():
            for record in records:
                return _message(record)
        return None

    async def commit(self, message: Message) -> bool:
        """Commits past `message`; False when the partition has moved on."""
        tp = TopicPartition(message.topic, message.partition)
        try:
            await self._consumer.commit({tp: message.offset + 1})
        except KafkaError as exc:
            log.error(
                "executor.kafka.commit_failed",
                topic=message.topic,
                partition=message.partition,
                offset=message.offset,
                error=repr(exc),
            )
            return False
        return True


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
