"""How a service's FastStream subscriber handles one record: applied, then its
offset committed (FastStream's ack on return).

- An outage (an exception of the service's `retryable` kinds) nacks the record,
  which seeks back to it: it is retried after a pause and nothing past it is
  committed.
- A record that can never apply (`Poison`, the service says why) goes to the
  topic's DLQ with a `dlq-reason` header, and is committed.
- Anything else (a bug) is retried a few times, then dead-lettered: it must
  neither loop forever nor hold up the records behind it.

Needs the `consumer` extra (`comfyserve-runtime[consumer]`): FastStream.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Annotated, Literal

import structlog
from aiokafka import ConsumerRecord  # type: ignore[import-untyped]
from faststream import AckPolicy, Context
from faststream.exceptions import NackMessage
from faststream.kafka import KafkaBroker, Topic
from faststream.message import StreamMessage
from prometheus_client import Counter

from comfyserve.contracts.headers import headers_to_carrier
from comfyserve.contracts.topics import dlq
from comfyserve.runtime.kafka import (
    DLQ_REASON_HEADER,
    FETCH_MAX_BYTES,
    PRODUCER_MAX_REQUEST_BYTES,
)
from comfyserve.runtime.logging import describe_error

__all__ = [
    "AUTHORIZATION",
    "HANDLER_ATTEMPTS",
    "RETRY_SECONDS",
    "Poison",
    "Record",
    "RecordHandler",
    "create_broker",
    "raw_body",
]

log = structlog.get_logger(__name__)

RETRY_SECONDS = 1.0
HANDLER_ATTEMPTS = 3

Record = Annotated[ConsumerRecord, Context("message.raw_message")]
"""The record a non-batch subscriber's message carries."""


AUTHORIZATION = "authorization"
"""A header that may carry a producer's credential; never dead-lettered."""


class Poison(Exception):
    """A record that can never apply; its message is the `dlq-reason`."""


def create_broker(
    bootstrap_servers: str,
    *,
    client_id: str,
    logger: logging.Logger,
    acks: Literal[1, "all"] = 1,
) -> KafkaBroker:
    """A service's FastStream broker: its producer (dead letters, the
    service's own events) sends records as large as a topic takes, and its
    lines go through `logger`, so the service's logging set-up (format,
    redaction) writes them instead of a handler of FastStream's own.

    Never idempotent: an idempotent producer whose state a broker restart
    loses never sends again, and FastStream cannot renew the one inside its
    broker. A retry's second copy is harmless: consumers de-duplicate on
    event id.
    """
    return KafkaBroker(
        bootstrap_servers,
        client_id=client_id,
        acks=acks,
        max_request_size=PRODUCER_MAX_REQUEST_BYTES,
        logger=logger,
        # FastStream logs every record at this level; our own lines say more.
        log_level=logging.DEBUG,
    )


async def raw_body(message: StreamMessage[object]) -> bytes:
    """A subscriber's decoder: the bytes as they came. FastStream would decode
    JSON before the handler runs, and a record that is not JSON would then fail
    forever instead of reaching the DLQ."""
    return message.body


class RecordHandler:
    """`on_record` is the subscriber; `apply` does the service's work.

    `errors` counts retried and dead-lettered records (label `outcome`);
    log lines are `<service>.consumer.*`.
    """

    def __init__(
        self,
        broker: KafkaBroker,
        apply: Callable[[ConsumerRecord], Awaitable[None]],
        *,
        service: str,
        errors: Counter,
        retryable: tuple[type[BaseException], ...],
        retry_seconds: float = RETRY_SECONDS,
        attempts: int = HANDLER_ATTEMPTS,
    ) -> None:
        self._broker = broker
        self._apply = apply
        self._service = service
        self._errors = errors
        self._retryable = retryable
        self._retry_seconds = retry_seconds
        self._attempts = attempts
        self._failures: dict[tuple[str, int, int], int] = {}

    def subscribe(
        self,
        *topics: str,
        group_id: str,
        auto_offset_reset: Literal["earliest", "latest"],
        title: str,
    ) -> None:
        """`on_record` subscribed to `topics` in `group_id`, each offset
        committed once its record is handled."""
        self._broker.subscriber(
            # Provisioned by their owners with their partitions and limits: a
            # consumer must never create them with a broker's defaults.
            *(Topic(name, declare=False) for name in topics),
            group_id=group_id,
            ack_policy=AckPolicy.NACK_ON_ERROR,
            auto_offset_reset=auto_offset_reset,
            max_partition_fetch_bytes=FETCH_MAX_BYTES,
            decoder=raw_body,
            title=title,
        )(self.on_record)

    async def on_record(self, body: bytes, record: Record) -> None:
        where = (record.topic, record.partition, record.offset)
        try:
            try:
                await self._apply(record)
            except Poison as poison:
                await self._dead_letter(record, str(poison))
        except self._retryable as error:
            await self._retry_later(record, error)
        except Exception as error:
            failures = self._failures.get(where, 0) + 1
            if failures >= self._attempts:
                self._failures.pop(where, None)
                await self._dead_letter(
                    record, f"handler failed {failures} times: {type(error).__name__}"
                )
                return
            self._failures[where] = failures
            await self._retry_later(record, error)
        self._failures.pop(where, None)

    async def _retry_later(self, record: ConsumerRecord, error: BaseException) -> None:
        self._errors.labels("retried").inc()
        log.warning(
            f"{self._service}.consumer.retry",
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
        # Operators read dead letters: a producer's credential stays behind.
        headers.pop(AUTHORIZATION, None)
        headers[DLQ_REASON_HEADER] = reason
        await self._broker.publish(
            record.value, topic=dlq(record.topic), key=record.key, headers=headers
        )
        self._errors.labels("dead_lettered").inc()
        log.warning(
            f"{self._service}.consumer.dead_lettered",
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            reason=reason,
        )
