from dataclasses import replace
from datetime import UTC, datetime, timedelta
from uuid import uuid4

import pytest

from comfyserve.contracts.events import (
    FailureCode,
    JobCancelled,
    JobCancelledData,
    JobCompleted,
    JobCompletedData,
    JobFailed,
    JobFailedData,
    JobProgressData,
    JobProgressed,
    JobStarted,
    JobStartedData,
    OutputFile,
    OutputKind,
    Priority,
)
from comfyserve.workflow.jobs.models import JobRecord, JobStatus
from comfyserve.workflow.jobs.state import (
    apply_event,
    exhaust,
    expire,
    lose_worker,
    merge_outputs,
    request_cancel,
)

T0 = datetime(2025, 1, 1, tzinfo=UTC)
MAX_ATTEMPTS = 3


def job(**fields) -> JobRecord:
    base = JobRecord(
        id=uuid4(),
        tenant_id="t1",
        status=JobStatus.RUNNING,
        priority=Priority.NORMAL,
        workflow={},
        inputs=[],
        created_at=T0,
        deadline=T0 + timedelta(hours=1),
        timeout_seconds=600,
        attempt=1,
        updated_at=T0,
        started_at=T0,
        worker_id="w1",
    )
    return replace(base, **fields)


def output(file_id: str, index: int = 0) -> OutputFile:
    return OutputFile(
        file_id=file_id,
        node_id="9",
        index=index,
        filename=f"{file_id}.png",
        kind=OutputKind.IMAGE,
        content_type="image/png",
        size=10,
        bucket="b",
        key=f"k/{file_id}",
    )


def started(attempt: int, worker: str = "w1") -> JobStarted:
    return JobStarted(
        source="test",
        subject="j",
        time=T0 + timedelta(seconds=5),
        data=JobStartedData(attempt=attempt, worker_id=worker),
    )


def progressed(
    attempt: int = 1, outputs: list[OutputFile] | None = None
) -> JobProgressed:
    return JobProgressed(
        source="test",
        subject="j",
        data=JobProgressData(
            attempt=attempt,
            worker_id="w1",
            node_id="3",
            class_type="KSampler",
            step=2,
            max=20,
            fraction=0.1,
            nodes_done=1,
            nodes_total=7,
            outputs=outputs or [],
        ),
    )


def completed(
    attempt: int = 1, outputs: list[OutputFile] | None = None
) -> JobCompleted:
    return JobCompleted(
        source="test",
        subject="j",
        time=T0 + timedelta(seconds=30),
        data=JobCompletedData(
            attempt=attempt, worker_id="w1", outputs=outputs or [], duration_ms=2500
        ),
    )


def failed(attempt: int = 1, *, retryable: bool) -> JobFailed:
    return JobFailed(
        source="test",
        subject="j",
        time=T0 + timedelta(seconds=20),
        data=JobFailedData(
            attempt=attempt,
            worker_id="w1",
            code=FailureCode.ENGINE_CRASHED
            if retryable
            else FailureCode.NODE_EXECUTION_ERROR,
            message="boom",
            node_id="3",
            class_type="KSampler",
            traceback="tb",
            retryable=retryable,
        ),
    )


def cancelled(attempt: int | None = 1) -> JobCancelled:
    return JobCancelled(
        source="test",
        subject="j",
        time=T0 + timedelta(seconds=9),
        data=JobCancelledData(attempt=attempt, worker_id="w1", reason="asked"),
    )


def test_started_moves_a_claimed_job_to_running_on_the_worker():
    result = apply_event(
        job(attempt=1, started_at=None), started(1, "w2"), max_attempts=3
    )
    assert result.changed
    assert result.job.status is JobStatus.RUNNING
    assert result.job.worker_id == "w2"
    assert result.job.started_at == T0 + timedelta(seconds=5)


def test_started_of_a_newer_attempt_takes_over():
    result = apply_event(job(attempt=1), started(2, "w2"), max_attempts=3)
    assert (result.job.attempt, result.job.worker_id) == (2, "w2")


def test_started_of_an_older_attempt_is_ignored():
    result = apply_event(job(attempt=2), started(1), max_attempts=3)
    assert not result.changed
    assert result.ignored


def test_started_of_the_attempt_a_pending_job_was_requeued_from_is_stale():
    result = apply_event(
        job(status=JobStatus.PENDING, attempt=1), started(1), max_attempts=3
    )
    assert not result.changed


def test_progress_stores_position_and_appends_outputs_once():
    first = apply_event(job(), progressed(outputs=[output("a")]), max_attempts=3)
    again = apply_event(
        first.job, progressed(outputs=[output("a"), output("b", 1)]), max_attempts=3
    )
    assert again.job.progress is not None
    assert again.job.progress["step"] == 2
    assert [o["file_id"] for o in again.job.outputs] == ["a", "b"]


def test_progress_of_another_attempt_is_ignored():
    assert not apply_event(
        job(attempt=2), progressed(attempt=1), max_attempts=3
    ).changed


@pytest.mark.parametrize("status", [JobStatus.PENDING, JobStatus.COMPLETED])
def test_progress_outside_running_is_ignored(status: JobStatus):
    result = apply_event(job(status=status), progressed(), max_attempts=3)
    assert not result.changed
    assert result.ignored


def test_completed_sets_outputs_time_and_duration():
    result = apply_event(
        job(outputs=[{"file_id": "old"}]),
        completed(outputs=[output("x")]),
        max_attempts=3,
    )
    assert result.job.status is JobStatus.COMPLETED
    assert [o["file_id"] for o in result.job.outputs] == ["x"]
    assert result.job.completed_at == T0 + timedelta(seconds=30)
    assert result.job.duration_seconds == 2.5


def test_late_progress_after_completed_is_ignored():
    done = apply_event(job(), completed(outputs=[output("x")]), max_attempts=3).job
    late = apply_event(done, progressed(outputs=[output("y")]), max_attempts=3)
    assert not late.changed
    assert late.job.status is JobStatus.COMPLETED
    assert [o["file_id"] for o in late.job.outputs] == ["x"]


@pytest.mark.parametrize(
    "status", [JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED]
)
def test_nothing_moves_a_final_job(status: JobStatus):
    final = job(status=status)
    for event in (started(2), completed(), failed(retryable=True), cancelled()):
        assert not apply_event(final, event, max_attempts=3).changed


def test_retryable_failure_with_attempts_left_requeues_keeping_the_count():
    result = apply_event(
        job(attempt=1, progress={"x": 1}), failed(retryable=True), max_attempts=3
    )
    assert result.requeue
    assert result.job.status is JobStatus.PENDING
    assert result.job.attempt == 1
    assert result.job.progress is None
    assert result.job.error is None


def test_retryable_failure_on_the_last_attempt_fails():
    result = apply_event(
        job(attempt=3), failed(3, retryable=True), max_attempts=MAX_ATTEMPTS
    )
    assert not result.requeue
    assert result.job.status is JobStatus.FAILED
    assert result.job.error is not None
    assert result.job.error["code"] == FailureCode.ENGINE_CRASHED.value


def test_non_retryable_failure_fails_with_the_node_and_message():
    result = apply_event(job(), failed(retryable=False), max_attempts=3)
    assert result.job.status is JobStatus.FAILED
    assert result.job.error == {
        "code": "node_execution_error",
        "message": "boom",
        "node_id": "3",
        "class_type": "KSampler",
        "traceback": "tb",
    }
    assert result.job.completed_at == T0 + timedelta(seconds=20)
    assert result.job.duration_seconds == 20.0


def test_retryable_failure_of_a_job_being_cancelled_cancels_it():
    result = apply_event(
        job(cancel_requested=True), failed(retryable=True), max_attempts=3
    )
    assert result.job.status is JobStatus.CANCELLED
    assert not result.requeue


def test_retryable_failure_of_an_already_requeued_job_does_not_requeue_twice():
    result = apply_event(
        job(status=JobStatus.PENDING), failed(retryable=True), max_attempts=3
    )
    assert not result.changed


def test_cancelled_ends_the_job():
    result = apply_event(job(), cancelled(), max_attempts=3)
    assert result.job.status is JobStatus.CANCELLED
    assert result.job.completed_at == T0 + timedelta(seconds=9)


def test_cancelled_of_an_older_attempt_is_ignored():
    assert not apply_event(job(attempt=2), cancelled(1), max_attempts=3).changed


def test_cancel_of_a_pending_job_ends_it_at_once():
    result = request_cancel(job(status=JobStatus.PENDING, started_at=None), T0)
    assert result.job.status is JobStatus.CANCELLED
    assert result.job.completed_at == T0
    assert not result.broadcast_cancel


def test_cancel_of_a_running_job_flags_it_and_tells_the_worker():
    result = request_cancel(job(), T0)
    assert result.job.status is JobStatus.RUNNING
    assert result.job.cancel_requested
    assert result.broadcast_cancel


def test_cancel_of_an_ended_job_changes_nothing():
    assert not request_cancel(job(status=JobStatus.COMPLETED), T0).changed


def test_expiry_fails_with_timeout_and_stops_a_running_worker():
    result = expire(job(), T0 + timedelta(hours=2))
    assert result.job.status is JobStatus.FAILED
    assert result.job.error is not None
    assert result.job.error["code"] == "timeout"
    assert result.broadcast_cancel
    assert not expire(job(status=JobStatus.PENDING), T0).broadcast_cancel


def test_lost_worker_requeues_while_attempts_remain():
    result = lose_worker(job(attempt=2), T0, max_attempts=3)
    assert result.requeue
    assert (result.job.status, result.job.attempt) == (JobStatus.PENDING, 2)


def test_lost_worker_on_the_last_attempt_fails_with_worker_lost():
    result = lose_worker(job(attempt=3), T0, max_attempts=3)
    assert result.job.status is JobStatus.FAILED
    assert result.job.error is not None
    assert result.job.error["code"] == "worker_lost"


def test_lost_worker_of_a_job_being_cancelled_cancels_it():
    result = lose_worker(job(cancel_requested=True), T0, max_attempts=3)
    assert result.job.status is JobStatus.CANCELLED


def test_exhausted_job_fails_with_worker_lost():
    result = exhaust(job(status=JobStatus.PENDING, attempt=3), T0, max_attempts=3)
    assert result.job.status is JobStatus.FAILED
    assert result.job.error is not None
    assert result.job.error["code"] == "worker_lost"


def test_merge_outputs_replaces_a_re_uploaded_output_in_place():
    merged = merge_outputs([{"file_id": "a", "size": 1}], [output("a"), output("b")])
    assert [(o["file_id"], o["size"]) for o in merged] == [("a", 10), ("b", 10)]
