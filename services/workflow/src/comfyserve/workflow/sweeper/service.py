"""Ends what nobody else will: jobs past their deadline, attempts whose lease
lapsed, idempotency keys past their lifetime, finished jobs past retention, and
workers and pools gone for good. Rows are taken with `SKIP LOCKED`, so every
instance sweeps without stepping on the others."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta

import structlog
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from comfyserve.runtime.database import delete_in_batches
from comfyserve.runtime.tasks import Loop, every
from comfyserve.workflow.jobs import dispatch_repository, queue_repository, repository
from comfyserve.workflow.jobs.models import PRIORITY_RANK, JobRecord, JobStatus
from comfyserve.workflow.jobs.state import Transition, expire, lose_worker
from comfyserve.workflow.jobs.transitions import count_transition, persist_transition
from comfyserve.workflow.settings import Settings
from comfyserve.workflow.telemetry import Metrics
from comfyserve.workflow.workers import repository as workers

log = structlog.get_logger(__name__)

_BATCH = 200
# Expired idempotency keys and jobs past retention go a bounded statement at a
# time, at most so many a pass: 50,000 a pass every 2 s is far above a steady
# 1,000 submissions/s, and a backlog (after an outage, or a shorter lifetime)
# is worked off over passes instead of in one delete that holds the sweep for
# as long as it takes.
_FORGET_BATCH = 5000
_FORGET_ROUNDS = 10
_PRIORITIES = {rank: priority.value for priority, rank in PRIORITY_RANK.items()}


# Deletes up to a number of rows that expired before an instant; how many.
_Delete = Callable[[AsyncConnection, datetime, int], Awaitable[int]]


@dataclass(frozen=True, slots=True)
class SweepReport:
    timed_out: int = 0
    requeued: int = 0
    worker_lost: int = 0
    cancelled: int = 0
    idempotency_keys_deleted: int = 0
    jobs_deleted: int = 0
    workers_deleted: int = 0
    pools_deleted: int = 0


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
        # Leases cannot be renewed while no workflow instance serves: after a
        # start, workers get one lease period to renew before any is expired.
        self._leases_from = time.monotonic() + settings.lease_seconds

    def loop(self) -> Loop:
        """A pass every `SWEEP_INTERVAL_SECONDS`, for `supervised`."""
        return every(
            self._settings.sweep_interval_seconds,
            self._pass,
            failed="workflow.sweep.failed",
            outages=(SQLAlchemyError, OSError),
        )

    async def _pass(self) -> None:
        report = await self.sweep_once(
            self._clock(), expire_leases=time.monotonic() >= self._leases_from
        )
        if report != SweepReport():
            log.info("workflow.sweep.done", **asdict(report))

    async def sweep_once(
        self, now: datetime, *, expire_leases: bool = True
    ) -> SweepReport:
        """One pass as of `now`: the jobs in one transaction, then expired
        idempotency keys and jobs past retention."""
        settings = self._settings
        deadline_before = now - timedelta(seconds=settings.deadline_grace_seconds)
        async with self._engine.connect() as conn, conn.begin():
            expired = await self._apply(
                conn,
                await repository.past_deadline(conn, deadline_before, _BATCH),
                lambda job: expire(job, now),
                now,
                "deadline passed",
            )
            lost: list[_Swept] = []
            if expire_leases:
                lost = await self._apply(
                    conn,
                    await dispatch_repository.lapsed_leases(conn, now, _BATCH),
                    lambda job: lose_worker(
                        job, now, max_attempts=settings.max_attempts
                    ),
                    now,
                    "lease lapsed",
                )
            gone_before = now - timedelta(hours=settings.pool_ttl_hours)
            workers_deleted = await workers.delete_workers_before(conn, gone_before)
            pools_deleted = await workers.delete_pools_unseen_since(conn, gone_before)
            self._report_depths(await queue_repository.depths(conn))
        deleted = await self._forget(
            repository.delete_expired_idempotency,
            now - timedelta(hours=settings.idempotency_ttl_hours),
        )
        jobs_deleted = await self._forget(
            repository.delete_finished_before,
            now - timedelta(days=settings.job_retention_days),
        )
        for swept in (*expired, *lost):
            count_transition(self._metrics, swept.before, swept.transition)
        report = SweepReport(
            timed_out=len(expired),
            requeued=sum(swept.transition.requeue for swept in lost),
            worker_lost=sum(swept.ended_as(JobStatus.FAILED) for swept in lost),
            cancelled=sum(swept.ended_as(JobStatus.CANCELLED) for swept in lost),
            idempotency_keys_deleted=deleted,
            jobs_deleted=jobs_deleted,
            workers_deleted=workers_deleted,
            pools_deleted=pools_deleted,
        )
        for kind, count in asdict(report).items():
            if count:
                self._metrics.sweeper_actions.labels(kind).inc(count)
        return report

    async def _forget(self, delete: _Delete, before: datetime) -> int:
        """Rows `delete` takes as of `before`, in batches outside the pass's
        transaction, so that none holds the jobs it locked; how many went."""
        return await delete_in_batches(
            self._engine,
            lambda conn, limit: delete(conn, before, limit),
            batch=_FORGET_BATCH,
            rounds=_FORGET_ROUNDS,
        )

    async def _apply(
        self,
        conn: AsyncConnection,
        jobs: list[JobRecord],
        verdict: Callable[[JobRecord], Transition],
        now: datetime,
        reason: str,
    ) -> list[_Swept]:
        swept = [_Swept(job.status, verdict(job)) for job in jobs]
        for item in swept:
            await persist_transition(
                conn,
                item.before,
                item.transition,
                now=now,
                source=self._source,
                cancel_reason=reason,
            )
        return swept

    def _report_depths(self, depths: dict[tuple[str, int], int]) -> None:
        for (pool, rank), pending in depths.items():
            self._metrics.queue_depth.labels(pool, _PRIORITIES[rank]).set(pending)


@dataclass(frozen=True, slots=True)
class _Swept:
    before: JobStatus
    transition: Transition

    def ended_as(self, status: JobStatus) -> bool:
        return self.transition.changed and self.transition.job.status is status
