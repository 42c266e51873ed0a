"""Applies what the executors report: job events, heartbeats and node catalogs."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from enum import StrEnum
from uuid import UUID

import structlog
from sqlalchemy.ext.asyncio import AsyncEngine

from comfyserve.contracts.events import (
    AnyEvent,
    JobCancelled,
    JobCompleted,
    JobFailed,
    JobProgressed,
    JobStarted,
    NodeCatalogPublished,
    WorkerHeartbeat,
)
from comfyserve.workflow.jobs import repository as jobs
from comfyserve.workflow.jobs.state import apply_event
from comfyserve.workflow.jobs.transitions import count_transition, persist_transition
from comfyserve.workflow.telemetry import Metrics
from comfyserve.workflow.workers import repository as workers

log = structlog.get_logger(__name__)

JobEvent = JobStarted | JobProgressed | JobCompleted | JobFailed | JobCancelled
_JOB_EVENTS = (JobStarted, JobProgressed, JobCompleted, JobFailed, JobCancelled)


class Outcome(StrEnum):
    APPLIED = "applied"
    DUPLICATE = "duplicate"
    IGNORED = "ignored"
    UNKNOWN_JOB = "unknown_job"
    RECORDED = "recorded"
    SKIPPED = "skipped"


class EventTracker:
    def __init__(
        self,
        *,
        engine: AsyncEngine,
        metrics: Metrics,
        max_attempts: int,
        source: str,
        clock: Callable[[], datetime],
        pools: frozenset[str] | None = None,
    ) -> None:
        self._engine = engine
        self._pools = pools
        self._metrics = metrics
        self._max_attempts = max_attempts
        self._source = source
        self._clock = clock

    async def on_event(self, event: AnyEvent) -> Outcome:
        """Apply one event in one transaction. Database errors propagate: the
        caller retries the record without committing its offset."""
        if isinstance(event, _JOB_EVENTS):
            outcome = await self.on_job_event(event)
            self._metrics.events_applied.labels(outcome.value).inc()
            return outcome
        if isinstance(event, WorkerHeartbeat):
            return await self.on_heartbeat(event)
        if isinstance(event, NodeCatalogPublished):
            return await self.on_catalog(event)
        log.info(
            "workflow.events.skipped", event_type=event.type, event_id=str(event.id)
        )
        return Outcome.SKIPPED

    async def on_job_event(self, event: JobEvent) -> Outcome:
        job_id = _job_id(event.subject)
        now = self._clock()
        async with self._engine.connect() as conn, conn.begin():
            job = (
                None
                if job_id is None
                else await jobs.get_job(conn, job_id, for_update=True, with_graph=False)
            )
            if job is None or (event.tenant_id and event.tenant_id != job.tenant_id):
                log.warning(
                    "workflow.events.unknown_job",
                    job_id=event.subject,
                    event_type=event.type,
                    event_id=str(event.id),
                )
                return Outcome.UNKNOWN_JOB
            if not await jobs.record_event(conn, job.id, event):
                return Outcome.DUPLICATE
            transition = apply_event(job, event, max_attempts=self._max_attempts)
            await persist_transition(
                conn,
                job.status,
                transition,
                now=now,
                source=self._source,
                cancel_reason="cancel requested",
            )
        count_transition(self._metrics, job.status, transition)
        if transition.ignored is not None:
            log.info(
                "workflow.events.ignored",
                job_id=event.subject,
                event_type=event.type,
                event_id=str(event.id),
                reason=transition.ignored,
            )
            return Outcome.IGNORED
        log.info(
            "workflow.events.applied",
            job_id=event.subject,
            event_type=event.type,
            status=transition.job.status.value,
            requeued=transition.requeue,
        )
        return Outcome.APPLIED

    async def on_heartbeat(self, event: WorkerHeartbeat) -> Outcome:
        data = event.data
        # The executor's clock may run ahead; a heartbeat never counts as
        # newer than its arrival.
        at = min(event.time, self._clock())
        async with self._engine.connect() as conn, conn.begin():
            await workers.upsert_heartbeat(
                conn,
                worker_id=data.worker_id,
                pool=data.pool,
                at=at,
                current_job_id=data.current_job_id,
                info=data.model_dump(
                    mode="json", exclude={"worker_id", "pool", "current_job_id"}
                ),
            )
        return Outcome.RECORDED

    async def on_catalog(self, event: NodeCatalogPublished) -> Outcome:
        data = event.data
        if self._pools is not None and data.pool not in self._pools:
            # Another deployment's executors on the same brokers, or a rogue
            # one: their nodes must never validate jobs here.
            log.warning(
                "workflow.catalog.pool_refused",
                pool=data.pool,
                worker_id=data.worker_id,
            )
            return Outcome.SKIPPED
        async with self._engine.connect() as conn, conn.begin():
            await workers.upsert_catalog(
                conn,
                pool=data.pool,
                worker_id=data.worker_id,
                catalog_hash=data.catalog_hash,
                object_info=data.object_info,
                at=event.time,
            )
        log.info(
            "workflow.catalog.recorded",
            pool=data.pool,
            worker_id=data.worker_id,
            catalog_hash=data.catalog_hash,
            node_count=len(data.object_info),
        )
        return Outcome.RECORDED


def _job_id(subject: str) -> UUID | None:
    try:
        return UUID(subject)
    except ValueError:
        return None
