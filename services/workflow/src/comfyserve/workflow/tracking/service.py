"""Applies what the executors report: job events, heartbeats and node catalogs.

A fetched batch's job events apply in one transaction, grouped by job: each job
is locked once, its new events are applied in order to the state the one before
left, and its row, outbox events and notifications are written once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from uuid import UUID

import structlog
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

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
from comfyserve.workflow.jobs.models import JobRecord, JobStatus
from comfyserve.workflow.jobs.state import Transition, apply_event
from comfyserve.workflow.jobs.transitions import TransitionWrites, count_transition
from comfyserve.workflow.telemetry import Metrics
from comfyserve.workflow.tracking import repository
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
        """Apply one event (see `on_events`)."""
        [outcome] = await self.on_events([event])
        return outcome

    async def on_events(self, events: Sequence[AnyEvent]) -> list[Outcome]:
        """Apply events in order, the job events in one transaction and the
        rest in another, each in a few statements whatever their number.
        Database errors propagate and nothing is applied: the caller retries
        the records without committing their offsets."""
        outcomes: dict[int, Outcome] = {}
        job_events: list[tuple[int, JobEvent]] = []
        others: list[tuple[int, WorkerHeartbeat | NodeCatalogPublished]] = []
        for index, event in enumerate(events):
            if isinstance(event, _JOB_EVENTS):
                job_events.append((index, event))
            elif isinstance(event, WorkerHeartbeat | NodeCatalogPublished):
                others.append((index, event))
            else:
                log.info(
                    "workflow.events.skipped",
                    event_type=event.type,
                    event_id=str(event.id),
                )
                outcomes[index] = Outcome.SKIPPED
        if job_events:
            outcomes.update(await self._apply_job_events(job_events))
        if others:
            # Worker rows apart from job rows, as claims and renewals take
            # them: no transaction holds both, so none can deadlock on them.
            outcomes.update(await self._record_workers(others))
        return [outcomes[index] for index in range(len(events))]

    async def _apply_job_events(
        self, indexed: list[tuple[int, JobEvent]]
    ) -> dict[int, Outcome]:
        by_job: dict[UUID, list[tuple[int, JobEvent]]] = {}
        outcomes: dict[int, Outcome] = {}
        for index, event in indexed:
            job_id = _job_id(event.subject)
            if job_id is None:
                outcomes[index] = _unknown(event)
            else:
                by_job.setdefault(job_id, []).append((index, event))
        now = self._clock()
        applied: list[_Applied] = []
        writes = TransitionWrites(
            now=now, source=self._source, cancel_reason="cancel requested"
        )
        # By event id: an event the executor sent twice is recorded once.
        given: dict[UUID, tuple[UUID, JobEvent]] = {}
        for job_id, items in by_job.items():
            for _, event in items:
                given.setdefault(event.id, (job_id, event))
        async with self._engine.connect() as conn, conn.begin():
            locked, new = await repository.lock_and_record(
                conn, list(by_job), list(given.values())
            )
            for job_id, items in by_job.items():
                job = locked.get(job_id)
                for index, event in items:
                    if job is None or (
                        event.tenant_id and event.tenant_id != job.tenant_id
                    ):
                        outcomes[index] = _unknown(event)
                if job is not None:
                    steps = self._apply_in_order(job, items, new, outcomes)
                    writes.add(job.status, [step.transition for step in steps])
                    applied.extend(steps)
            await writes.flush(conn)
        for step in applied:
            outcomes[step.index] = self._report(step)
        for outcome in outcomes.values():
            self._metrics.events_applied.labels(outcome.value).inc()
        return outcomes

    def _apply_in_order(
        self,
        job: JobRecord,
        items: list[tuple[int, JobEvent]],
        new: set[UUID],
        outcomes: dict[int, Outcome],
    ) -> list[_Applied]:
        """One job's new events applied in turn, each to the state the one
        before left; events seen before (in an earlier batch, or earlier in
        this one) are duplicates."""
        steps: list[_Applied] = []
        for index, event in items:
            if index in outcomes:
                continue
            if event.id not in new:
                outcomes[index] = Outcome.DUPLICATE
                continue
            new.discard(event.id)
            transition = apply_event(job, event, max_attempts=self._max_attempts)
            steps.append(_Applied(index, event, job.status, transition))
            job = transition.job
        return steps

    def _report(self, step: _Applied) -> Outcome:
        """Metrics and logs of an applied event, once its transaction committed."""
        event, transition = step.event, step.transition
        count_transition(self._metrics, step.before, transition)
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

    async def _record_workers(
        self, indexed: list[tuple[int, WorkerHeartbeat | NodeCatalogPublished]]
    ) -> dict[int, Outcome]:
        outcomes: dict[int, Outcome] = {}
        recorded: list[NodeCatalogPublished] = []
        beats: list[workers.Heartbeat] = []
        async with self._engine.connect() as conn, conn.begin():
            for index, event in indexed:
                if isinstance(event, WorkerHeartbeat):
                    beats.append(self._heartbeat(event))
                    outcomes[index] = Outcome.RECORDED
                elif await self._record_catalog(conn, event):
                    recorded.append(event)
                    outcomes[index] = Outcome.RECORDED
                else:
                    outcomes[index] = Outcome.SKIPPED
            await workers.upsert_heartbeats(conn, beats)
        for catalog in recorded:
            log.info(
                "workflow.catalog.recorded",
                pool=catalog.data.pool,
                worker_id=catalog.data.worker_id,
                catalog_hash=catalog.data.catalog_hash,
                node_count=len(catalog.data.object_info),
            )
        return outcomes

    def _heartbeat(self, event: WorkerHeartbeat) -> workers.Heartbeat:
        data = event.data
        # The executor's clock may run ahead; a heartbeat never counts as
        # newer than its arrival.
        return workers.Heartbeat(
            worker_id=data.worker_id,
            pool=data.pool,
            at=min(event.time, self._clock()),
            current_job_id=data.current_job_id,
            info=data.model_dump(
                mode="json", exclude={"worker_id", "pool", "current_job_id"}
            ),
        )

    async def _record_catalog(
        self, conn: AsyncConnection, event: NodeCatalogPublished
    ) -> bool:
        data = event.data
        if self._pools is not None and data.pool not in self._pools:
            # Another deployment's executors on the same brokers, or a rogue
            # one: their nodes must never validate jobs here.
            log.warning(
                "workflow.catalog.pool_refused",
                pool=data.pool,
                worker_id=data.worker_id,
            )
            return False
        await workers.upsert_catalog(
            conn,
            pool=data.pool,
            worker_id=data.worker_id,
            catalog_hash=data.catalog_hash,
            object_info=data.object_info,
            at=event.time,
        )
        return True


@dataclass(frozen=True, slots=True)
class _Applied:
    index: int
    event: JobEvent
    before: JobStatus
    transition: Transition


def _unknown(event: JobEvent) -> Outcome:
    log.warning(
        "workflow.events.unknown_job",
        job_id=event.subject,
        event_type=event.type,
        event_id=str(event.id),
    )
    return Outcome.UNKNOWN_JOB


def _job_id(subject: str) -> UUID | None:
    try:
        return UUID(subject)
    except ValueError:
        return None
