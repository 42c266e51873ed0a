"""Writing a state change: the row, the queue counters, the events it implies
and the notifications, all in the caller's transaction."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncConnection

from comfyserve.runtime.notifications import notify
from comfyserve.workflow.db import JOBS_CHANNEL, QUEUE_CHANNEL
from comfyserve.workflow.jobs import events, queue_repository, repository
from comfyserve.workflow.jobs.models import JobStatus
from comfyserve.workflow.jobs.state import Transition
from comfyserve.workflow.outbox import repository as outbox
from comfyserve.workflow.telemetry import Metrics


async def persist_transition(
    conn: AsyncConnection,
    before: JobStatus,
    transition: Transition,
    *,
    now: datetime,
    source: str,
    cancel_reason: str,
) -> None:
    """Write a state change with the events it implies, and tell watchers.

    `before` is the status the job had when the caller locked it: leaving or
    entering the queue moves its counters, and reaching a final status emits
    `finished`, exactly once per job.
    """
    if not transition.changed:
        return
    job = transition.job
    await repository.save_job(conn, job, now)
    after = job.status
    if before is JobStatus.PENDING and after is not JobStatus.PENDING:
        await queue_repository.adjust_depth(conn, job.pool, job.priority, -1)
    if after is JobStatus.PENDING and before is not JobStatus.PENDING:
        await queue_repository.adjust_depth(conn, job.pool, job.priority, 1)
        await notify(conn, QUEUE_CHANNEL, job.pool)
    # A sweep or a consumed event has no request behind it: the job's own
    # trace goes on, so a re-queued attempt shows up beside the first.
    trace = job.traceparent
    if transition.requeue:
        await outbox.add_event(conn, events.submitted(job, source), now, trace)
    if transition.broadcast_cancel:
        event = events.cancel_requested(job, source, cancel_reason)
        await outbox.add_event(conn, event, now, trace)
    if after.is_final and not before.is_final:
        await outbox.add_event(conn, events.finished(job, source), now, trace)
    await notify(conn, JOBS_CHANNEL, str(job.id))


def count_transition(
    metrics: Metrics, before: JobStatus, transition: Transition
) -> None:
    if transition.changed and transition.job.status is not before:
        metrics.job_transitions.labels(transition.job.status.value).inc()
        if transition.job.status.is_final and not before.is_final:
            metrics.job_ended(transition.job)
