"""A batch of executor events applied together, against the real database."""

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.exc import DBAPIError

from comfyserve.contracts.events import (
    FailureCode,
    JobCompleted,
    JobCompletedData,
    JobFailed,
    JobFailedData,
    JobFinished,
    JobStarted,
    JobStartedData,
    JobSubmitted,
    OutputFile,
    WorkerHeartbeat,
    WorkerHeartbeatData,
)
from comfyserve.contracts.pb.workflow.v1 import workflow_pb2 as pb
from comfyserve.contracts.topics import FINISHED, SUBMITTED
from comfyserve.workflow.tracking.service import Outcome

from .test_consumer_integration import claimed_job, get_job, output, progressed

pytestmark = pytest.mark.integration


def started(job_id: str, tenant_id: str, attempt: int = 1) -> JobStarted:
    return JobStarted(
        source="test",
        subject=job_id,
        tenant_id=tenant_id,
        data=JobStartedData(attempt=attempt, worker_id="w1", prompt_id="p1"),
    )


def completed(job_id: str, tenant_id: str, outputs: list[OutputFile]) -> JobCompleted:
    return JobCompleted(
        source="test",
        subject=job_id,
        tenant_id=tenant_id,
        data=JobCompletedData(
            attempt=1, worker_id="w1", outputs=outputs, duration_ms=1500
        ),
    )


def failed(job_id: str, tenant_id: str, *, retryable: bool) -> JobFailed:
    return JobFailed(
        source="test",
        subject=job_id,
        tenant_id=tenant_id,
        data=JobFailedData(
            attempt=1,
            worker_id="w1",
            code=FailureCode.ENGINE_CRASHED,
            message="ComfyUI exited",
            retryable=retryable,
        ),
    )


async def test_a_jobs_whole_life_in_one_batch_ends_once(
    runtime, stub, probe, db, make_workflow
):
    tenant_id, job_id = await claimed_job(stub, make_workflow)
    first, last = output(str(uuid.uuid4())), output(str(uuid.uuid4()), 1)
    progress = progressed(job_id, tenant_id, [first], step=5)
    batch = [
        started(job_id, tenant_id),
        progress,
        progress,  # re-delivered within the batch
        completed(job_id, tenant_id, [first, last]),
        failed(job_id, tenant_id, retryable=False),  # after the end
    ]

    outcomes = await runtime.tracker.on_events(batch)

    assert outcomes == [
        Outcome.APPLIED,
        Outcome.APPLIED,
        Outcome.DUPLICATE,
        Outcome.APPLIED,
        Outcome.IGNORED,
    ]
    job = await get_job(stub, tenant_id, job_id)()
    assert job.status == pb.JOB_STATUS_COMPLETED
    assert [o.file_id for o in job.outputs] == [first.file_id, last.file_id]
    assert job.progress.step == 5
    logged = await db.fetchval(
        "SELECT count(*) FROM job_events WHERE job_id = $1", uuid.UUID(job_id)
    )
    assert logged == 4
    topic, event = await probe.wait_for(job_id, lambda t, _e: t == FINISHED)
    assert isinstance(event, JobFinished)
    assert event.data.status.value == "completed"
    assert [t for t, _ in probe.events[job_id] if t == FINISHED] == [FINISHED]

    # The same batch again, as after a crash before the offsets' commit.
    again = await runtime.tracker.on_events(batch)
    assert again == [Outcome.DUPLICATE] * len(batch)


async def test_another_tenants_event_in_a_batch_is_not_logged_nor_applied(
    runtime, stub, db, make_workflow
):
    tenant_id, job_id = await claimed_job(stub, make_workflow)
    foreign = completed(job_id, "someone-else", [])
    own = started(job_id, tenant_id)
    # An event that names no tenant is the job's.
    anonymous = progressed(job_id, tenant_id, [], step=2).model_copy(
        update={"tenant_id": None}
    )

    outcomes = await runtime.tracker.on_events([foreign, own, anonymous])

    assert outcomes == [Outcome.UNKNOWN_JOB, Outcome.APPLIED, Outcome.APPLIED]
    logged = await db.fetch(
        "SELECT id FROM job_events WHERE job_id = $1", uuid.UUID(job_id)
    )
    assert {row["id"] for row in logged} == {own.id, anonymous.id}
    job = await get_job(stub, tenant_id, job_id)()
    assert job.status == pb.JOB_STATUS_RUNNING
    assert job.progress.step == 2


async def test_jobs_in_one_batch_apply_each_in_order(
    runtime, stub, probe, make_workflow
):
    tenant_a, job_a = await claimed_job(stub, make_workflow)
    tenant_b, job_b = await claimed_job(stub, make_workflow)
    batch = [
        started(job_a, tenant_a),
        started(job_b, tenant_b),
        started(str(uuid.uuid4()), tenant_a),  # no such job
        completed(job_b, "someone-else", []),  # not that tenant's job
        failed(job_a, tenant_a, retryable=True),
        completed(job_b, tenant_b, []),
    ]

    outcomes = await runtime.tracker.on_events(batch)

    assert outcomes == [
        Outcome.APPLIED,
        Outcome.APPLIED,
        Outcome.UNKNOWN_JOB,
        Outcome.UNKNOWN_JOB,
        Outcome.APPLIED,
        Outcome.APPLIED,
    ]
    a = await get_job(stub, tenant_a, job_a)()
    b = await get_job(stub, tenant_b, job_b)()
    assert (a.status, b.status) == (pb.JOB_STATUS_PENDING, pb.JOB_STATUS_COMPLETED)
    # The re-queued job is counted back into the queue and offered again.
    assert a.queue_position >= 1
    await probe.wait_for(
        job_a, lambda t, e: t == SUBMITTED and isinstance(e, JobSubmitted)
    )
    retry = await stub.ClaimJob(
        pb.ClaimJobRequest(tenant_id=tenant_a, job_id=job_a, worker_id="w2")
    )
    assert (retry.granted, retry.attempt) == (True, 2)


async def test_a_batch_the_database_rejects_applies_nothing(
    runtime, stub, db, make_workflow
):
    tenant_id, job_id = await claimed_job(stub, make_workflow)
    # JSONB refuses a NUL character: the whole batch's transaction fails.
    base = progressed(job_id, tenant_id, [], step=1)
    rejected = base.model_copy(
        update={"data": base.data.model_copy(update={"class_type": "Bad\u0000Node"})}
    )
    batch = [started(job_id, tenant_id), rejected, completed(job_id, tenant_id, [])]

    with pytest.raises(DBAPIError):
        await runtime.tracker.on_events(batch)

    job = await get_job(stub, tenant_id, job_id)()
    assert job.status == pb.JOB_STATUS_RUNNING
    assert not job.HasField("completed_at")
    logged = await db.fetchval(
        "SELECT count(*) FROM job_events WHERE job_id = $1", uuid.UUID(job_id)
    )
    assert logged == 0


def heartbeat(worker_id: str, at: datetime, job: str | None) -> WorkerHeartbeat:
    return WorkerHeartbeat(
        source="test",
        subject=worker_id,
        time=at,
        data=WorkerHeartbeatData(
            worker_id=worker_id, current_job_id=job, interval_s=5.0
        ),
    )


async def test_a_batchs_heartbeats_keep_each_workers_latest(runtime, db):
    one, two = (f"w-{uuid.uuid4().hex[:8]}" for _ in range(2))
    now = datetime.now(UTC)
    earlier = now - timedelta(seconds=10)
    batch = [
        heartbeat(one, now, "job-new"),
        heartbeat(one, earlier, "job-old"),  # arrived late
        heartbeat(two, earlier, None),
    ]

    outcomes = await runtime.tracker.on_events(batch)

    assert outcomes == [Outcome.RECORDED] * 3
    rows = {
        row["worker_id"]: row
        for row in await db.fetch(
            "SELECT worker_id, last_heartbeat, current_job_id FROM workers"
            " WHERE worker_id = ANY($1)",
            [one, two],
        )
    }
    assert (rows[one]["last_heartbeat"], rows[one]["current_job_id"]) == (
        now,
        "job-new",
    )
    assert rows[two]["last_heartbeat"] == earlier

    # A later batch with an older heartbeat never moves time back.
    await runtime.tracker.on_events([heartbeat(one, earlier, "job-old")])
    assert (
        await db.fetchval(
            "SELECT current_job_id FROM workers WHERE worker_id = $1", one
        )
        == "job-new"
    )
    await db.execute("DELETE FROM workers WHERE worker_id = ANY($1)", [one, two])
