"""Tenant quotas and usage against the real service: the queued limit at
submit, the running limit at dispatch, and what usage counts."""

import asyncio
import json
import uuid

import grpc
import pytest

from comfyserve.contracts.events import JobCompleted, JobCompletedData
from comfyserve.contracts.pb.workflow.v1 import workflow_pb2 as pb
from comfyserve.runtime.grpc import rpc_details

pytestmark = pytest.mark.integration


def new_tenant() -> str:
    return f"quota-{uuid.uuid4().hex[:8]}"


async def submit(stub, tenant_id: str, marker: str) -> pb.Job:
    graph = {"1": {"class_type": marker, "inputs": {"label": uuid.uuid4().hex}}}
    response = await stub.SubmitJob(
        pb.SubmitJobRequest(tenant_id=tenant_id, workflow_json=json.dumps(graph))
    )
    assert response.WhichOneof("result") == "job", response
    return response.job


async def acquire(stub, pool: str, worker: str) -> pb.Assignment:
    response = await stub.AcquireJob(pb.AcquireJobRequest(worker_id=worker, pool=pool))
    return response.assignment


async def set_quota(stub, tenant_id: str, **limits: int) -> pb.TenantQuota:
    return await stub.SetTenantQuota(
        pb.SetTenantQuotaRequest(tenant_id=tenant_id, **limits)
    )


async def test_a_quota_is_the_default_until_set_and_unset_fields_stay_default(
    stub, settings
) -> None:
    tenant_id = new_tenant()
    default = await stub.GetTenantQuota(pb.GetTenantQuotaRequest(tenant_id=tenant_id))
    assert (default.max_running, default.max_queued) == (
        settings.tenant_max_running,
        settings.tenant_max_queued,
    )
    assert default.running_is_default
    assert default.queued_is_default

    own = await set_quota(stub, tenant_id, max_queued=7)
    read = await stub.GetTenantQuota(pb.GetTenantQuotaRequest(tenant_id=tenant_id))

    assert read == own
    assert (read.max_running, read.max_queued) == (settings.tenant_max_running, 7)
    assert read.running_is_default
    assert not read.queued_is_default


@pytest.mark.parametrize(
    ("limits", "field"),
    [({"max_running": 0}, "max_running"), ({"max_queued": -1}, "max_queued")],
)
async def test_a_limit_out_of_range_is_refused_naming_it(stub, limits, field) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await set_quota(stub, new_tenant(), **limits)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert list(rpc_details(raised.value).fields) == [field]


async def test_a_full_queue_refuses_the_next_submit_until_a_job_starts(
    stub, private_pool, settings
) -> None:
    pool, marker = private_pool
    tenant_id = new_tenant()
    await set_quota(stub, tenant_id, max_queued=2)
    await submit(stub, tenant_id, marker)
    await submit(stub, tenant_id, marker)

    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await submit(stub, tenant_id, marker)

    assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    details = rpc_details(raised.value)
    assert details.reason == "queue_full"
    assert details.retry_after_s == settings.queue_full_retry_after_seconds
    # Another tenant's queue is its own.
    await submit(stub, new_tenant(), marker)
    # A job that starts leaves the queue and frees a place in it.
    assert (await acquire(stub, pool, "starter")).job.tenant_id
    await submit(stub, tenant_id, marker)


async def test_a_tenant_at_its_running_limit_waits_while_others_run(
    stub, private_pool, executor, eventually
) -> None:
    pool, marker = private_pool
    busy, other = new_tenant(), new_tenant()
    await set_quota(stub, busy, max_running=2)
    first = await submit(stub, busy, marker)
    second = await submit(stub, busy, marker)
    third = await submit(stub, busy, marker)
    theirs = await submit(stub, other, marker)

    granted = [(await acquire(stub, pool, f"w{i}")).job.id for i in range(4)]

    # The third job is older than the other tenant's but its tenant is full.
    assert granted == [first.id, second.id, theirs.id, ""]
    claim = await stub.ClaimJob(
        pb.ClaimJobRequest(tenant_id=busy, job_id=third.id, worker_id="named")
    )
    assert (claim.granted, claim.reason) == (False, "tenant_at_limit")

    await executor(
        JobCompleted(
            source="test",
            subject=first.id,
            tenant_id=busy,
            data=JobCompletedData(
                attempt=1, worker_id="w0", outputs=[], duration_ms=1500
            ),
        )
    )
    await eventually(
        lambda: stub.GetJob(pb.GetJobRequest(tenant_id=busy, job_id=first.id)),
        lambda job: job.status == pb.JOB_STATUS_COMPLETED,
    )
    assert (await acquire(stub, pool, "w4")).job.id == third.id


async def test_a_waiter_is_woken_when_a_running_slot_of_the_tenant_frees(
    stub, private_pool, executor
) -> None:
    pool, marker = private_pool
    tenant_id = new_tenant()
    await set_quota(stub, tenant_id, max_running=1)
    first = await submit(stub, tenant_id, marker)
    second = await submit(stub, tenant_id, marker)
    assert (await acquire(stub, pool, "w0")).job.id == first.id

    # Waits far longer than the bound below: only a wake-up answers in time.
    async def wait_for_job() -> pb.AcquireJobResponse:
        return await stub.AcquireJob(
            pb.AcquireJobRequest(worker_id="w1", pool=pool, wait_seconds=300)
        )

    waiting = asyncio.create_task(wait_for_job())
    await asyncio.sleep(0.5)
    assert not waiting.done()

    await executor(
        JobCompleted(
            source="test",
            subject=first.id,
            tenant_id=tenant_id,
            data=JobCompletedData(
                attempt=1, worker_id="w0", outputs=[], duration_ms=10
            ),
        )
    )

    granted = await asyncio.wait_for(waiting, timeout=20)
    assert granted.assignment.job.id == second.id


async def test_racing_claimers_never_pass_the_running_limit(stub, private_pool):
    pool, marker = private_pool
    tenant_id = new_tenant()
    await set_quota(stub, tenant_id, max_running=1)
    for _ in range(6):
        await submit(stub, tenant_id, marker)

    assignments = await asyncio.gather(
        *(acquire(stub, pool, f"racer-{i}") for i in range(6))
    )

    assert len([a for a in assignments if a.job.id]) == 1


async def test_usage_counts_jobs_by_status_and_their_run_time(
    stub, private_pool, executor, eventually
) -> None:
    pool, marker = private_pool
    tenant_id, idle = new_tenant(), new_tenant()
    done = await submit(stub, tenant_id, marker)
    await submit(stub, tenant_id, marker)
    assert (await acquire(stub, pool, "u1")).job.id == done.id
    await executor(
        JobCompleted(
            source="test",
            subject=done.id,
            tenant_id=tenant_id,
            data=JobCompletedData(
                attempt=1, worker_id="u1", outputs=[], duration_ms=2500
            ),
        )
    )

    async def usage() -> pb.GetUsageResponse:
        return await stub.GetUsage(pb.GetUsageRequest(tenant_ids=[tenant_id, idle]))

    def by_tenant(answer: pb.GetUsageResponse) -> dict[str, pb.TenantUsage]:
        return {usage.tenant_id: usage for usage in answer.tenants}

    answer = await eventually(
        usage, lambda got: "completed" in by_tenant(got)[tenant_id].jobs_by_status
    )

    found = by_tenant(answer)
    assert set(found) == {tenant_id, idle}
    assert dict(found[tenant_id].jobs_by_status) == {"completed": 1, "pending": 1}
    assert found[tenant_id].gpu_seconds == pytest.approx(2.5)
    assert dict(found[idle].jobs_by_status) == {}
