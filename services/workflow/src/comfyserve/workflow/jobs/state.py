"""The job state machine: pure functions from a job and an event to its next state.

`pending → running → completed | failed | cancelled`, forward only, with one
way back: a failed or abandoned attempt re-queues the job (`running → pending`)
while attempts remain. Attempts are counted by claims, so a re-queue keeps the
count and the next claim raises it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from comfyserve.contracts.events import (
    FailureCode,
    JobCancelled,
    JobCompleted,
    JobEvent,
    JobFailed,
    JobProgressed,
    JobStarted,
    OutputFile,
)
from comfyserve.workflow.jobs.models import JobRecord, JobStatus

__all__ = [
    "Transition",
    "apply_event",
    "exhaust",
    "expire",
    "lose_worker",
    "request_cancel",
]


@dataclass(frozen=True, slots=True)
class Transition:
    job: JobRecord
    changed: bool
    # Publish `submitted` again: the job is pending for another attempt.
    requeue: bool = False
    # Broadcast `cancel-requested`, so the worker running it stops.
    broadcast_cancel: bool = False
    ignored: str | None = None


def _ignore(job: JobRecord, why: str) -> Transition:
    return Transition(job=job, changed=False, ignored=why)


def _change(
    job: JobRecord,
    *,
    requeue: bool = False,
    broadcast_cancel: bool = False,
    **fields: Any,
) -> Transition:
    return Transition(
        job=replace(job, **fields),
        changed=True,
        requeue=requeue,
        broadcast_cancel=broadcast_cancel,
    )


def _duration(job: JobRecord, ended_at: datetime) -> float | None:
    if job.started_at is None:
        return None
    return max((ended_at - job.started_at).total_seconds(), 0.0)


def apply_event(job: JobRecord, event: JobEvent, *, max_attempts: int) -> Transition:
    """The effect of one executor event on `job`; events that cannot move it
    forward are ignored with a reason."""
    if job.status.is_final:
        return _ignore(job, f"job already {job.status}")
    if isinstance(event, JobStarted):
        return _on_started(job, event)
    if isinstance(event, JobProgressed):
        return _on_progressed(job, event)
    if isinstance(event, JobCompleted):
        return _on_completed(job, event)
    if isinstance(event, JobFailed):
        return _on_failed(job, event, max_attempts)
    return _on_cancelled(job, event)


def _on_started(job: JobRecord, event: JobStarted) -> Transition:
    attempt = event.data.attempt
    # A pending job was re-queued after this attempt: its next start comes
    # through a claim with a higher attempt, so an equal one is stale.
    if attempt < job.attempt or (
        job.status is JobStatus.PENDING and attempt == job.attempt
    ):
        return _ignore(job, "started event of an older attempt")
    new_attempt = attempt > job.attempt
    return _change(
        job,
        status=JobStatus.RUNNING,
        attempt=attempt,
        worker_id=event.data.worker_id,
        started_at=event.time,
        progress=None if new_attempt else job.progress,
    )


def _on_progressed(job: JobRecord, event: JobProgressed) -> Transition:
    data = event.data
    if job.status is not JobStatus.RUNNING:
        return _ignore(job, f"progress while {job.status}")
    if data.attempt != job.attempt:
        return _ignore(job, "progress of another attempt")
    progress = {
        "node_id": data.node_id,
        "class_type": data.class_type,
        "step": data.step,
        "max": data.max,
        "fraction": data.fraction,
        "nodes_done": data.nodes_done,
        "nodes_total": data.nodes_total,
        "preview_file_id": data.preview_file_id,
    }
    return _change(
        job, progress=progress, outputs=merge_outputs(job.outputs, data.outputs)
    )


def merge_outputs(
    known: list[dict[str, Any]], new: list[OutputFile]
) -> list[dict[str, Any]]:
    """`known` with `new` appended; an output already listed (same file id) is
    replaced in place, so a re-delivered or re-uploaded output appears once."""
    merged = list(known)
    position = {output["file_id"]: i for i, output in enumerate(merged)}
    for output in new:
        dumped = output.model_dump(mode="json")
        if output.file_id in position:
            merged[position[output.file_id]] = dumped
        else:
            position[output.file_id] = len(merged)
            merged.append(dumped)
    return merged


def _on_completed(job: JobRecord, event: JobCompleted) -> Transition:
    data = event.data
    if data.attempt < job.attempt:
        return _ignore(job, "completed event of an older attempt")
    return _change(
        job,
        status=JobStatus.COMPLETED,
        attempt=data.attempt,
        worker_id=data.worker_id,
        outputs=[output.model_dump(mode="json") for output in data.outputs],
        completed_at=event.time,
        duration_seconds=data.duration_ms / 1000,
        error=None,
    )


def _on_failed(job: JobRecord, event: JobFailed, max_attempts: int) -> Transition:
    data = event.data
    if data.attempt < job.attempt:
        return _ignore(job, "failed event of an older attempt")
    if job.cancel_requested:
        return _cancel(job, event.time)
    if data.retryable and data.attempt < max_attempts:
        if job.status is JobStatus.PENDING:
            return _ignore(job, "attempt already re-queued")
        return _requeue(job)
    error = {
        "code": data.code.value,
        "message": data.message,
        "node_id": data.node_id,
        "class_type": data.class_type,
        "traceback": data.traceback,
    }
    return _fail(job, error, event.time, attempt=data.attempt)


def _on_cancelled(job: JobRecord, event: JobCancelled) -> Transition:
    attempt = event.data.attempt
    if attempt is not None and attempt < job.attempt:
        return _ignore(job, "cancelled event of an older attempt")
    return _cancel(job, event.time)


def _cancel(job: JobRecord, at: datetime) -> Transition:
    return _change(
        job,
        status=JobStatus.CANCELLED,
        completed_at=at,
        duration_seconds=_duration(job, at),
    )


def _fail(
    job: JobRecord, error: dict[str, Any], at: datetime, attempt: int | None = None
) -> Transition:
    return _change(
        job,
        status=JobStatus.FAILED,
        attempt=job.attempt if attempt is None else attempt,
        error=error,
        completed_at=at,
        duration_seconds=_duration(job, at),
    )


def _requeue(job: JobRecord) -> Transition:
    return _change(
        job,
        status=JobStatus.PENDING,
        progress=None,
        lease_expires_at=None,
        requeue=True,
    )


def _failure(code: FailureCode, message: str) -> dict[str, Any]:
    return {
        "code": code.value,
        "message": message,
        "node_id": None,
        "class_type": None,
        "traceback": None,
    }


def expire(job: JobRecord, now: datetime) -> Transition:
    """The sweeper's verdict on a job past its deadline: failed with `timeout`;
    a running one also gets its worker told to stop."""
    if job.status.is_final:
        return _ignore(job, f"job already {job.status}")
    transition = _fail(
        job,
        _failure(
            FailureCode.TIMEOUT,
            f"job did not finish before its deadline {job.deadline.isoformat()}",
        ),
        now,
    )
    return replace(transition, broadcast_cancel=job.status is JobStatus.RUNNING)


def lose_worker(job: JobRecord, now: datetime, *, max_attempts: int) -> Transition:
    """A running job whose lease lapsed (its worker stopped renewing it):
    re-queued while attempts remain, else failed with `worker_lost`; a job being
    cancelled ends cancelled."""
    if job.status is not JobStatus.RUNNING:
        return _ignore(job, f"job is {job.status}")
    if job.cancel_requested:
        return _cancel(job, now)
    if job.attempt < max_attempts:
        return _requeue(job)
    return _fail(
        job,
        _failure(
            FailureCode.WORKER_LOST,
            f"worker {job.worker_id} stopped renewing its lease on attempt "
            f"{job.attempt} of {max_attempts}",
        ),
        now,
    )


def exhaust(job: JobRecord, now: datetime, *, max_attempts: int) -> Transition:
    """A job free to run again that has used all its attempts (counted by
    claims): failed with `worker_lost`."""
    return _fail(
        job,
        _failure(
            FailureCode.WORKER_LOST,
            f"job was lost on all {max_attempts} attempts",
        ),
        now,
    )


def request_cancel(job: JobRecord, now: datetime) -> Transition:
    """A client's cancel: a pending job ends at once, a running one is flagged
    and its worker told; an ended job stays as it is."""
    if job.status is JobStatus.PENDING:
        return _cancel(job, now)
    if job.status is JobStatus.RUNNING:
        if job.cancel_requested:
            return _ignore(job, "cancel already requested")
        return _change(job, cancel_requested=True, broadcast_cancel=True)
    return _ignore(job, f"job already {job.status}")
