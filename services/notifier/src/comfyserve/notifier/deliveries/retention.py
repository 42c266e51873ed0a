"""Forgets finished deliveries once the delivery log has kept them long enough.

The log is for inspecting and replaying recent deliveries; without an end it
grows by a row, and its attempts, per webhook target of every job. A delivery
that succeeded or went dead is deleted `DELIVERY_RETENTION_DAYS` after it
finished (a replay makes it pending again, and its clock starts over); pending
ones never are. Each pass deletes a bounded batch a statement, each statement a
transaction of its own, and stops after a few: a backlog is worked off over
passes, and every instance sweeps without waiting on another (`SKIP LOCKED`).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

import structlog
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from comfyserve.notifier.deliveries import repository
from comfyserve.notifier.settings import Settings
from comfyserve.notifier.telemetry import Metrics
from comfyserve.runtime.database import delete_in_batches
from comfyserve.runtime.tasks import Loop, every

log = structlog.get_logger(__name__)

BATCH = 5000
ROUNDS = 10


class DeliveryRetention:
    def __init__(
        self,
        engine: AsyncEngine,
        settings: Settings,
        metrics: Metrics,
        clock: Callable[[], datetime],
        *,
        batch: int = BATCH,
        rounds: int = ROUNDS,
    ) -> None:
        self._engine = engine
        self._keep = timedelta(days=settings.delivery_retention_days)
        self._interval_s = settings.retention_interval_seconds
        self._metrics = metrics
        self._clock = clock
        self._batch = batch
        self._rounds = rounds

    def loop(self) -> Loop:
        """`sweep_once` every `RETENTION_INTERVAL_SECONDS`, for `supervised`."""
        return every(
            self._interval_s,
            self.sweep_once,
            failed="notifier.retention.failed",
            outages=(SQLAlchemyError, OSError),
        )

    async def sweep_once(self) -> int:
        """One pass: how many deliveries it forgot."""
        before = self._clock() - self._keep
        deleted = await delete_in_batches(
            self._engine,
            lambda conn, limit: repository.delete_finished_before(conn, before, limit),
            batch=self._batch,
            rounds=self._rounds,
        )
        if deleted:
            self._metrics.forgotten.inc(deleted)
            log.info("notifier.retention.deleted", count=deleted)
        return deleted
