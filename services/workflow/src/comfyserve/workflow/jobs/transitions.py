"""Writing a state change: the row, the queue counters, the events it implies
and the notifications, all in the caller's transaction."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.dml import UpdateBase

from comfyserve.contracts.events import Event, Priority
from comfyserve.runtime.notifications import notify_all
from comfyserve.workflow.db import JOBS_CHANNEL, QUEUE_CHANNEL
from comfyserve.workflow.jobs import events, queue_repository, repository
from comfyserve.workflow.jobs.models import JobRecord, JobStatus
from comfyserve.workflow.jobs.state import Transition
from comfyserve.workflow.outbox import repository as outbox
from comfyserve.workflow.telemetry import Metrics


class TransitionWrites:
    """The writes of several jobs' state changes, gathered so one statement
    sends them all: a row update per job, the queue counters, one outbox
    insert and the notifications."""

    def __init__(self, *, now: datetime, source: str, cancel_reason: str) -> None:
        self._now = now
        self._source = source
        self._cancel_reason = cancel_reason
        # By id: the statement's writes must each touch a row of their own.
        self._jobs: dict[UUID, JobRecord] = {}
        self._depth: dict[tuple[str, Priority], int] = {}
        self._events: list[tuple[Event, str | None]] = []
        self._notifications: list[tuple[str, str]] = []

    def add(self, before: JobStatus, transitions: Sequence[Transition]) -> None:
        """One job's successive transitions, from `before`, the status it had
        when the caller locked it: leaving or entering the queue moves its
        counters, and reaching a final status emits `finished`, exactly once
        per job."""
        changed = [transition for transition in transitions if transition.changed]
        if not changed:
            return
        job = changed[-1].job
        self._jobs[job.id] = job
        status = before
        for transition in changed:
            self._add_step(status, transition)
            status = transition.job.status
        pending = int(status is JobStatus.PENDING) - int(before is JobStatus.PENDING)
        if pending:
            key = (job.pool, job.priority)
            self._depth[key] = self._depth.get(key, 0) + pending
        self._notifications.append((JOBS_CHANNEL, str(job.id)))

    def _add_step(self, before: JobStatus, transition: Transition) -> None:
        job = transition.job
        after = job.status
        if after is JobStatus.PENDING and before is not JobStatus.PENDING:
            self._notifications.append((QUEUE_CHANNEL, job.pool))
        elif after.is_final and not before.is_final and before is not JobStatus.PENDING:
            # A running slot of the tenant is free: a waiter that found only
            # this tenant's jobs (at its running limit) may claim one now
            # rather than at the end of its wait.
            self._notifications.append((QUEUE_CHANNEL, job.pool))
        # A sweep or a consumed event has no request behind it: the job's own
        # trace goes on, so a re-queued attempt shows up beside the first.
        trace = job.traceparent
        if transition.requeue:
            self._events.append((events.submitted(job, self._source), trace))
        if transition.broadcast_cancel:
            event = events.cancel_requested(job, self._source, self._cancel_reason)
            self._events.append((event, trace))
        if after.is_final and not before.is_final:
            self._events.append((events.finished(job, self._source), trace))

    async def flush(self, conn: AsyncConnection) -> None:
        """Send the gathered writes in one statement."""
        writes: list[UpdateBase] = [
            repository.job_update(job, self._now) for job in self._jobs.values()
        ]
        writes += [
            queue_repository.depth_change(pool, priority, delta)
            for (pool, priority), delta in self._depth.items()
            if delta
        ]
        if self._events:
            writes.append(outbox.events_insert(self._events, self._now))
            self._notifications.append(outbox.WAKE_RELAY)
        await notify_all(conn, self._notifications, along=writes)
        self._jobs.clear()
        self._depth.clear()
        self._events.clear()
        self._notifications.clear()


async def persist_transition(
    conn: AsyncConnection,
    before: JobStatus,
    transition: Transition,
    *,
    now: datetime,
    source: str,
    cancel_reason: str,
) -> None:
    """Write one job's state change with the events it implies, and tell
    watchers (see `TransitionWrites.add`)."""
    writes = TransitionWrites(now=now, source=source, cancel_reason=cancel_reason)
    writes.add(before, [transition])
    await writes.flush(conn)


def count_transition(
    metrics: Metrics, before: JobStatus, transition: Transition
) -> None:
    if transition.changed and transition.job.status is not before:
        metrics.job_transitions.labels(transition.job.status.value).inc()
        if transition.job.status.is_final and not before.is_final:
            metrics.job_ended(transition.job)
