"""Publishes outbox rows to Kafka and deletes them once Kafka has them.

Woken by `NOTIFY workflow_outbox` after each commit that adds rows, and by a
poll timer in case a notification is lost. Rows are locked with `SKIP LOCKED`,
so several instances relay side by side; a row is deleted in the transaction
that locked it, after the broker acknowledged it, so a crash republishes
rather than loses (consumers de-duplicate on the event id).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime
from typing import Any

import structlog
from aiokafka import AIOKafkaProducer  # type: ignore[import-untyped]
from aiokafka.errors import KafkaError  # type: ignore[import-untyped]
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from comfyserve.contracts.headers import event_headers
from comfyserve.workflow.db import OUTBOX_CHANNEL, listen_forever
from comfyserve.workflow.outbox import repository
from comfyserve.workflow.telemetry import Metrics

log = structlog.get_logger(__name__)

_RETRY_SECONDS = 1.0


def create_producer(bootstrap_servers: str) -> Any:
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap_servers,
        enable_idempotence=True,
        acks="all",
        # Every submitted job waits on this send; a batch is already formed
        # from the rows locked together, so lingering only adds latency.
        linger_ms=0,
    )


class OutboxRelay:
    def __init__(
        self,
        *,
        engine: AsyncEngine,
        dsn: str,
        producer: Any,
        metrics: Metrics,
        poll_seconds: float,
        batch_size: int,
        clock: Callable[[], datetime],
    ) -> None:
        self._engine = engine
        self._dsn = dsn
        self._producer = producer
        self._metrics = metrics
        self._poll_seconds = poll_seconds
        self._batch_size = batch_size
        self._clock = clock
        self._wake = asyncio.Event()

    async def run(self) -> None:
        """Relay until cancelled."""
        listener = asyncio.create_task(self._listen(), name="outbox-listen")
        try:
            while True:
                try:
                    while await self.relay_once() == self._batch_size:
                        pass
                except (SQLAlchemyError, OSError, KafkaError) as error:
                    log.warning("workflow.outbox.relay_failed", error=str(error))
                    await asyncio.sleep(_RETRY_SECONDS)
                    continue
                try:
                    await asyncio.wait_for(self._wake.wait(), self._poll_seconds)
                except TimeoutError:
                    pass
                self._wake.clear()
        finally:
            listener.cancel()
            await asyncio.gather(listener, return_exceptions=True)

    async def relay_once(self) -> int:
        """Publish and delete one batch; the number of rows published."""
        async with self._engine.connect() as conn, conn.begin():
            oldest = await repository.oldest_created_at(conn)
            self._metrics.outbox_lag.set(
                0.0 if oldest is None else (self._clock() - oldest).total_seconds()
            )
            messages = await repository.lock_batch(conn, self._batch_size)
            if not messages:
                return 0
            sends = [
                await self._producer.send(
                    message.topic,
                    value=message.payload,
                    key=message.key.encode(),
                    headers=event_headers(message.headers),
                )
                for message in messages
            ]
            await asyncio.gather(*sends)
            await repository.delete_rows(conn, [message.id for message in messages])
        self._metrics.outbox_published.inc(len(messages))
        log.debug("workflow.outbox.published", count=len(messages))
        return len(messages)

    async def _listen(self) -> None:
        await listen_forever(self._dsn, OUTBOX_CHANNEL, lambda _: self._wake.set())
