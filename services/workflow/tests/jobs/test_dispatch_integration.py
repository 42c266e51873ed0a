"""Dispatch by claim against the real service: AcquireJob, leases, pools."""

import asyncio
import json
import uuid

import grpc
import pytest

from comfyserve.contracts.events import (
    JobCompleted,
    JobCompletedData,
    JobFinished,
    OutputFile,
    OutputKind,
)
from comfyserve.contracts.pb.workflow.v1 import workflow_pb2 as pb
from comfyserve.workflow.jobs import queue_repository

pytestmark = pytest.mark.integration


def tenant() -> str:
    return f"tenant-{uuid.uuid4().hex[:8]}"


def marked(marker: str, label: str = "", **nodes: dict) -> str:
    """A graph only the private pool can run."""
    graph = {"1": {"class_type": marker, "inputs": {"label": label}}, **nodes}
    return json.dumps(graph)


async def submit(stub, tenant_id: str, workflow_json: str, **fields) -> pb.Job:
    response = await stub.SubmitJob(
        pb.SubmitJobRequest(tenant_id=tenant_id, workflow_json=workflow_json, **fields)
    )
    assert response.WhichOneof("result") == "job", response
    return response.job


async def acquire(stub, pool: str, worker: str, wait: float = 0) -> pb.Assignment:
    response = await stub.AcquireJob(
        pb.AcquireJobRequest(worker_id=worker, pool=pool, wait_seconds=wait)
    )
    return response.assignment


async def test_a_graph_goes_to_the_pool_whose_catalog_runs_it(stub, private_pool):
    pool, marker = private_pool
    job = await submit(stub, tenant(), marked(marker))
    assert job.pool == pool

    unknown = await stub.SubmitJob(
        pb.SubmitJobRequest(
            tenant_id=tenant(),
            workflow_json=json.dumps(
                {"1": {"class_type": "NoPoolHasIt", "inputs": {}}}
            ),
        )
    )
    assert unknown.validation_errors.error.type == "missing_node_type"


async def test_acquire_takes_the_highest_priority_then_the_oldest(stub, private_pool):
    pool, marker = private_pool
    tenant_id = tenant()
    low = await submit(stub, tenant_id, marked(marker, "low"), priority=pb.PRIORITY_LOW)
    normal = await submit(stub, tenant_id, marked(marker, "normal"))
    high_1 = await submit(
        stub, tenant_id, marked(marker, "h1"), priority=pb.PRIORITY_HIGH
    )
    high_2 = await submit(
        stub, tenant_id, marked(marker, "h2"), priority=pb.PRIORITY_HIGH
    )

    order = [(await acquire(stub, pool, f"w{i}")).job.id for i in range(4)]

    assert order == [high_1.id, high_2.id, normal.id, low.id]
    empty = await stub.AcquireJob(pb.AcquireJobRequest(worker_id="w5", pool=pool))
    assert not empty.HasField("assignment")


async def test_concurrent_acquires_grant_each_job_once(stub, private_pool):
    pool, marker = private_pool
    ids = {(await submit(stub, tenant(), marked(marker, str(i)))).id for i in range(3)}

    assignments = await asyncio.gather(
        *(acquire(stub, pool, f"racer-{i}") for i in range(8))
    )

    granted = [a.job.id for a in assignments if a.job.id]
    assert sorted(granted) == sorted(ids)
    assert all(a.attempt == 1 for a in assignments if a.job.id)


async def test_a_waiting_acquire_gets_a_job_queued_after_it_started(stub, private_pool):
    pool, marker = private_pool
    waiting = asyncio.create_task(acquire(stub, pool, "patient", wait=25))
    await asyncio.sleep(0.5)
    assert not waiting.done()

    job = await submit(stub, tenant(), marked(marker))

    assignment = await asyncio.wait_for(waiting, 25)
    assert assignment.job.id == job.id
    assert assignment.job.worker_id == "patient"


async def test_queue_positions_follow_the_queue_as_it_drains(stub, private_pool):
    pool, marker = private_pool
    tenant_id = tenant()
    first = await submit(stub, tenant_id, marked(marker, "a"))
    second = await submit(stub, tenant_id, marked(marker, "b"))
    urgent = await submit(
        stub, tenant_id, marked(marker, "c"), priority=pb.PRIORITY_HIGH
    )
    assert (first.queue_position, second.queue_position) == (1, 2)
    assert urgent.queue_position == 1

    async def position(job: pb.Job) -> int:
        got = await stub.GetJob(pb.GetJobRequest(tenant_id=tenant_id, job_id=job.id))
        return got.queue_position

    assert [await position(j) for j in (urgent, first, second)] == [1, 2, 3]
    await acquire(stub, pool, "drain-1")
    await stub.CancelJob(pb.CancelJobRequest(tenant_id=tenant_id, job_id=first.id))
    assert await position(second) == 1


async def test_positions_past_the_counted_limit_come_from_the_jobs_behind(
    stub, private_pool, monkeypatch
):
    """With more jobs ahead than are counted, a position is the depth counter
    less the jobs behind: the same numbers, as jobs leave from the head, the
    middle and the back."""
    monkeypatch.setattr(queue_repository, "_COUNT_AHEAD_LIMIT", 2)
    pool, marker = private_pool
    tenant_id = tenant()
    queued = [await submit(stub, tenant_id, marked(marker, str(n))) for n in range(6)]
    urgent = await submit(
        stub, tenant_id, marked(marker, "urgent"), priority=pb.PRIORITY_HIGH
    )

    async def positions() -> list[int]:
        return [
            (
                await stub.GetJob(pb.GetJobRequest(tenant_id=tenant_id, job_id=j.id))
            ).queue_position
            for j in queued
        ]

    assert [j.queue_position for j in queued] == [1, 2, 3, 4, 5, 6]
    assert await positions() == [2, 3, 4, 5, 6, 7]
    assert (await acquire(stub, pool, "drain-urgent")).job.id == urgent.id
    assert (await acquire(stub, pool, "drain-head")).job.id == queued[0].id
    await stub.CancelJob(pb.CancelJobRequest(tenant_id=tenant_id, job_id=queued[3].id))
    queued = [queued[1], queued[2], queued[4], queued[5]]
    assert await positions() == [1, 2, 3, 4]


async def test_renewals_say_held_cancel_requested_lost_and_ended(
    stub, executor, probe, db, runtime, private_pool
):
    pool, marker = private_pool
    tenant_id = tenant()
    job = await submit(stub, tenant_id, marked(marker))
    assignment = await acquire(stub, pool, "renewer")
    lease = pb.Lease(job_id=job.id, attempt=assignment.attempt)

    async def renew(worker: str = "renewer") -> int:
        answer = await stub.RenewLeases(
            pb.RenewLeasesRequest(worker_id=worker, leases=[lease])
        )
        assert answer.lease_seconds == 15
        [status] = answer.leases
        return status.state

    assert await renew() == pb.LEASE_STATE_HELD
    assert await renew("impostor") == pb.LEASE_STATE_LOST
    await stub.CancelJob(pb.CancelJobRequest(tenant_id=tenant_id, job_id=job.id))
    assert await renew() == pb.LEASE_STATE_CANCEL_REQUESTED

    other = await submit(stub, tenant_id, marked(marker, "again"))
    taken = await acquire(stub, pool, "slow")
    assert taken.job.id == other.id
    # The worker stops renewing: the sweeper re-queues, the worker is told.
    await db.execute(
        "UPDATE jobs SET lease_expires_at = now() - interval '1 second' WHERE id = $1",
        uuid.UUID(other.id),
    )
    await runtime.sweeper.sweep_once(await db.fetchval("SELECT now()"))
    slow = pb.Lease(job_id=other.id, attempt=taken.attempt)
    answer = await stub.RenewLeases(
        pb.RenewLeasesRequest(worker_id="slow", leases=[slow])
    )
    assert answer.leases[0].state == pb.LEASE_STATE_LOST

    retaken = await acquire(stub, pool, "fast")
    assert (retaken.job.id, retaken.attempt) == (other.id, 2)
    output = OutputFile(
        file_id=str(uuid.uuid4()),
        node_id="1",
        index=0,
        filename="x.png",
        kind=OutputKind.IMAGE,
        content_type="image/png",
        size=1,
        bucket="comfyserve",
        key="outputs/x",
    )
    await executor(
        JobCompleted(
            source="test",
            subject=other.id,
            tenant_id=tenant_id,
            data=JobCompletedData(
                attempt=2, worker_id="fast", outputs=[output], duration_ms=5
            ),
        )
    )
    _, finished = await probe.wait_for(
        other.id, lambda _t, e: isinstance(e, JobFinished)
    )
    assert isinstance(finished, JobFinished)
    assert (finished.data.status, finished.data.attempt) == ("completed", 2)
    assert finished.data.output_file_ids == [output.file_id]
    fast = pb.Lease(job_id=other.id, attempt=2)
    answer = await stub.RenewLeases(
        pb.RenewLeasesRequest(worker_id="fast", leases=[fast])
    )
    assert answer.leases[0].state == pb.LEASE_STATE_ENDED


async def test_every_final_state_is_announced_once(stub, probe, make_workflow):
    tenant_id = tenant()
    job = await submit(stub, tenant_id, make_workflow())
    for _ in range(2):
        await stub.CancelJob(pb.CancelJobRequest(tenant_id=tenant_id, job_id=job.id))

    _, finished = await probe.wait_for(job.id, lambda _t, e: isinstance(e, JobFinished))
    assert isinstance(finished, JobFinished)
    assert (finished.data.status, finished.data.attempt) == ("cancelled", 0)
    await asyncio.sleep(1)
    announced = [e for _, e in probe.events[job.id] if isinstance(e, JobFinished)]
    assert len(announced) == 1


async def test_listings_and_watches_leave_the_graph_out(stub, make_workflow):
    tenant_id = tenant()
    job = await submit(stub, tenant_id, make_workflow())
    listed = await stub.ListJobs(pb.ListJobsRequest(tenant_id=tenant_id))
    assert [j.workflow_json for j in listed.jobs] == [""]
    stream = stub.WatchJob(pb.WatchJobRequest(tenant_id=tenant_id, job_id=job.id))
    first = await asyncio.wait_for(stream.__aiter__().__anext__(), 10)
    stream.cancel()
    assert first.job.workflow_json == ""
    got = await stub.GetJob(pb.GetJobRequest(tenant_id=tenant_id, job_id=job.id))
    assert json.loads(got.workflow_json)["2"]["class_type"] == "SaveImage"


async def test_every_documented_status_filters(stub, make_workflow):
    tenant_id = tenant()
    await submit(stub, tenant_id, make_workflow())
    for status in pb.JobStatus.values():
        if status == pb.JOB_STATUS_UNSPECIFIED:
            continue
        page = await stub.ListJobs(
            pb.ListJobsRequest(tenant_id=tenant_id, statuses=[status])
        )
        expected = 1 if status == pb.JOB_STATUS_PENDING else 0
        assert len(page.jobs) == expected, pb.JobStatus.Name(status)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.ListJobs(
            pb.ListJobsRequest(
                tenant_id=tenant_id, statuses=[pb.JobStatus.ValueType(99)]
            )
        )
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:15432/",
        "http://169.254.169.254/latest/meta-data/",
        "http://10.1.2.3/hook",
        "http://[::1]/hook",
        "http://[::ffff:127.0.0.1]/hook",
        "http://localhost/hook",
        "http://user:secret@93.184.215.14/hook",
        "ftp://93.184.215.14/hook",
    ],
)
async def test_non_public_webhook_targets_are_refused(stub, make_workflow, url):
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await submit(stub, tenant(), make_workflow(), webhook_url=url)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "webhook_url" in (raised.value.details() or "")
