"""Ends what nobody else will: jobs past their deadline, jobs whose worker
died, and idempotency keys past their lifetime. Rows are taken with
`SKIP LOCKED`, so every instance sweeps without stepping on the others."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta

import structlog
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from comfyserve.workflow.jobs import repository
from comfyserve.workflow.jobs.models import JobStatus
from comfyserve.workflow.jobs.service import count_transition, persist_transition
from comfyserve.workflow.jobs.state import Transition, expire, lose_worker
from comfyserve.workflow.settings import Settings
from comfyserve.workflow.telemetry import Metrics

log = structlog.get_logger(__name__)

_BATCH = 200


@dataclass(frozen=True, slots=True)
class SweepReport:
    timed_out: int = 0
    requeued: int = 0
    worker_lost: int = 0
    cancelled: int = 0
    idempotency_keys_deleted: int = 0


class Sweeper:
    def __init__(
        self,
        *,
        engine: AsyncEngine,
        settings: Settings,
        metrics: Metrics,
        source: str,
        clock: Callable[[], datetime],
    ) -> None:
        self._engine = engine
        self._settings = settings
        self._metrics = metrics
        self._source = source
        self._clock = clock

    async def run(self) -> None:
        """Sweep every `SWEEP_INTERVAL_SECONDS` until cancelled."""
        while True:
            try:
                report = await self.sweep_once(self._clock())
            except (SQLAlchemyError, OSError) as error:
                log.warning("workflow.sweep.failed", error=str(error))
            else:
                if report != SweepReport():
                    log.info("workflow.sweep.done", **asdict(report))
            await asyncio.sleep(self._settings.sweep_interval_seconds)

    async def sweep_once(self, now: datetime) -> SweepReport:
        """One pass as of `now`, in one transaction."""
        settings = self._settings
        deadline_before = now - timedelta(seconds=settings.deadline_grace_seconds)
        stale_before = now - timedelta(seconds=settings.heartbeat_timeout_seconds)
        async with self._engine.connect() as conn, conn.begin():
            expired = [
                _Swept(job.status, expire(job, now))
                for job in await repository.past_deadline(conn, deadline_before, _BATCH)
            ]
            for swept in expired:
                await persist_transition(
                    conn,
                    swept.transition,
                    now=now,
                    source=self._source,
                    cancel_reason="deadline passed",
                )
            lost = [
                _Swept(
                    job.status,
                    lose_worker(job, now, max_attempts=settings.max_attempts),
                )
                for job in await repository.running_on_stale_workers(
                    conn, stale_before, _BATCH
                )
            ]
            for swept in lost:
                await persist_transition(
                    conn,
                    swept.transition,
                    now=now,
                    source=self._source,
                    cancel_reason="worker lost",
                )
            deleted = await repository.delete_expired_idempotency(
                conn, now - timedelta(hours=settings.idempotency_ttl_hours)
            )
        for swept in (*expired, *lost):
            count_transition(self._metrics, swept.before, swept.transition)
        return SweepReport(
            timed_out=len(expired),
            requeued=sum(swept.transition.requeue for swept in lost),
            worker_lost=sum(swept.ended_as(JobStatus.FAILED) for swept in lost),
            cancelled=sum(swept.ended_as(JobStatus.CANCELLED) for swept in lost),
            idempotency_keys_deleted=deleted,
        )


@dataclass(frozen=True, slots=True)
class _Swept:
    before: JobStatus
    transition: Transition

    def ended_as(self, status: JobStatus) -> bool:
        return self.transition.changed and self.transition.job.status is status
