"""What the native ComfyUI API needs of the workflow service: a caller-chosen
job id, the client id, the queue number, listings in acceptance order with
graphs and totals, and the fleet's node catalog."""

import json
import uuid

import grpc
import pytest

from comfyserve.contracts.pb.workflow.v1 import workflow_pb2 as pb

pytestmark = pytest.mark.integration


def tenant() -> str:
    return f"tenant-{uuid.uuid4().hex[:8]}"


async def submit(stub, tenant_id: str, workflow_json: str, **fields) -> pb.Job:
    response = await stub.SubmitJob(
        pb.SubmitJobRequest(tenant_id=tenant_id, workflow_json=workflow_json, **fields)
    )
    assert response.WhichOneof("result") == "job", response
    return response.job


async def test_a_chosen_job_id_and_client_id_are_kept(stub, make_workflow):
    tenant_id, job_id = tenant(), str(uuid.uuid4())
    job = await submit(
        stub, tenant_id, make_workflow(), job_id=job_id, client_id="socket-1"
    )
    read = await stub.GetJob(pb.GetJobRequest(tenant_id=tenant_id, job_id=job_id))

    assert (job.id, job.client_id) == (job_id, "socket-1")
    assert (read.id, read.client_id, read.number) == (job_id, "socket-1", job.number)


@pytest.mark.parametrize(
    "job_id", ["not-a-uuid", str(uuid.uuid4()).upper(), uuid.uuid4().hex]
)
async def test_a_job_id_that_is_not_a_canonical_uuid_is_invalid(
    stub, make_workflow, job_id
):
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await submit(stub, tenant(), make_workflow(), job_id=job_id)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "job_id" in (refused.value.details() or "")


async def test_a_taken_job_id_is_already_exists_for_any_tenant(stub, make_workflow):
    job_id = str(uuid.uuid4())
    owner = tenant()
    await submit(stub, owner, make_workflow(), job_id=job_id)

    for other in (owner, tenant()):
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await submit(stub, other, make_workflow(), job_id=job_id)
        assert refused.value.code() == grpc.StatusCode.ALREADY_EXISTS
        assert owner not in (refused.value.details() or "")


async def test_numbers_grow_and_an_oldest_first_listing_follows_them(
    stub, make_workflow
):
    tenant_id = tenant()
    jobs = [await submit(stub, tenant_id, make_workflow()) for _ in range(3)]
    assert jobs[0].number < jobs[1].number < jobs[2].number

    listed = await stub.ListJobs(
        pb.ListJobsRequest(
            tenant_id=tenant_id,
            order=pb.JOB_ORDER_OLDEST_FIRST,
            offset=1,
            page_size=1,
            with_graph=True,
            with_total=True,
            statuses=[pb.JOB_STATUS_PENDING, pb.JOB_STATUS_RUNNING],
        )
    )
    [second] = listed.jobs
    assert second.id == jobs[1].id
    assert json.loads(second.workflow_json)["2"]["class_type"] == "SaveImage"
    assert listed.total == 3
    assert listed.next_cursor == ""


async def test_a_default_listing_leaves_graphs_and_total_out(stub, make_workflow):
    tenant_id = tenant()
    await submit(stub, tenant_id, make_workflow())
    listed = await stub.ListJobs(pb.ListJobsRequest(tenant_id=tenant_id))
    assert [job.workflow_json for job in listed.jobs] == [""]
    assert listed.total == 0


async def test_an_offset_with_the_cursor_order_is_invalid(stub):
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.ListJobs(pb.ListJobsRequest(tenant_id=tenant(), offset=2))
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_the_node_catalog_is_the_union_of_the_pools(stub, private_pool):
    _pool, marker = private_pool
    answer = await stub.GetNodeCatalog(pb.GetNodeCatalogRequest(tenant_id=tenant()))
    document = json.loads(answer.object_info_json)
    assert {"EmptyImage", "SaveImage", marker} <= document.keys()
    assert document["EmptyImage"]["input"]["required"]["width"][0] == "INT"


async def test_one_class_of_the_catalog_and_an_unknown_one(stub):
    one = await stub.GetNodeCatalog(
        pb.GetNodeCatalogRequest(tenant_id=tenant(), class_type="EmptyImage")
    )
    unknown = await stub.GetNodeCatalog(
        pb.GetNodeCatalogRequest(tenant_id=tenant(), class_type="NoSuchNode")
    )
    assert list(json.loads(one.object_info_json)) == ["EmptyImage"]
    assert json.loads(unknown.object_info_json) == {}
