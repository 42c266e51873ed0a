import asyncio
import json
import uuid

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from comfyserve.contracts.events import JobSubmitted, Priority
from comfyserve.contracts.pb.workflow.v1 import workflow_pb2 as pb
from comfyserve.contracts.topics import SUBMITTED
from comfyserve.contracts.workflow_format import ASSET_TYPE
from comfyserve.runtime.database import create_engine
from comfyserve.runtime.grpc import insecure_channel
from comfyserve.runtime.logging import describe_error, format_exception
from comfyserve.workflow.app import SERVICE_NAME as SERVICE

pytestmark = pytest.mark.integration

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
# A global address: webhook targets must be public (no resolution needed).
PUBLIC_HOOK = "https://93.184.215.14/hook"


def tenant() -> str:
    return f"tenant-{uuid.uuid4().hex[:8]}"


def asset(file_id: str) -> dict:
    return {"__type": ASSET_TYPE, "info": {"id": file_id}}


def load_image(file_id: str) -> dict:
    return {"class_type": "LoadImage", "inputs": {"image": asset(file_id)}}


async def submit(
    stub, tenant_id: str, workflow_json: str, **fields
) -> pb.SubmitJobResponse:
    return await stub.SubmitJob(
        pb.SubmitJobRequest(tenant_id=tenant_id, workflow_json=workflow_json, **fields)
    )


async def test_submit_stores_a_pending_job_and_the_relay_publishes_it(
    stub, probe, make_workflow, db, eventually
):
    tenant_id = tenant()
    response = await submit(
        stub,
        tenant_id,
        make_workflow(),
        metadata={"run": "1"},
        webhook_url=PUBLIC_HOOK,
    )
    job = response.job
    assert response.WhichOneof("result") == "job"
    assert not response.replayed
    assert job.status == pb.JOB_STATUS_PENDING
    assert job.priority == pb.PRIORITY_NORMAL
    assert job.pool == "default"
    assert job.timeout_seconds == 600
    assert job.attempt == 0
    assert job.queue_position >= 1
    assert job.deadline.ToDatetime() > job.created_at.ToDatetime()
    assert json.loads(job.workflow_json)["2"]["class_type"] == "SaveImage"

    topic, event = await probe.wait_for(
        job.id, lambda _t, e: isinstance(e, JobSubmitted)
    )
    assert topic == SUBMITTED
    assert isinstance(event, JobSubmitted)
    assert event.tenant_id == tenant_id
    assert event.data.attempt == 1
    assert event.data.priority is Priority.NORMAL
    assert event.data.pool == job.pool
    # The graph stays out of Kafka: the executor gets it from its claim.
    assert "workflow" not in json.loads(event.model_dump_json())["data"]
    # Deleted in the relay's transaction once Kafka acknowledged the batch.
    await eventually(
        lambda: db.fetchval("SELECT count(*) FROM outbox WHERE key = $1", job.id),
        lambda count: count == 0,
    )


async def test_asset_references_resolve_to_the_tenants_files(
    stub, files, make_workflow
):
    tenant_id = tenant()
    stored = files.add(tenant_id, "cat.png")
    saved = {
        "class_type": "SaveImage",
        "inputs": {"images": ["3", 0], "filename_prefix": "cat"},
    }
    response = await submit(
        stub, tenant_id, make_workflow(**{"3": load_image(stored.file_id), "4": saved})
    )
    job = response.job
    # The stored graph keeps the reference; the one to run names the file.
    assert json.loads(job.workflow_json)["3"]["inputs"]["image"] == asset(
        stored.file_id
    )
    claim = await stub.ClaimJob(
        pb.ClaimJobRequest(tenant_id=tenant_id, job_id=job.id, worker_id="w-assets")
    )
    assignment = claim.assignment
    assert json.loads(assignment.workflow_json)["3"]["inputs"]["image"] == "cat.png"
    [staged] = assignment.inputs
    assert (staged.file_id, staged.node_id, staged.input_name) == (
        stored.file_id,
        "3",
        "image",
    )
    assert (staged.bucket, staged.key, staged.filename) == (
        stored.bucket,
        stored.key,
        "cat.png",
    )
    assert [(ref.node_id, ref.input_name) for ref in assignment.file_inputs] == [
        ("3", "image")
    ]


async def test_missing_other_tenant_and_unready_files_are_validation_errors(
    stub, files, make_workflow
):
    tenant_id = tenant()
    foreign = files.add(tenant(), "theirs.png")
    unready = files.add(tenant_id, "half.png", ready=False)
    missing = str(uuid.uuid4())
    graph = make_workflow(
        **{
            "3": load_image(foreign.file_id),
            "4": load_image(unready.file_id),
            "5": load_image(missing),
        }
    )
    response = await submit(stub, tenant_id, graph)
    assert response.WhichOneof("result") == "validation_errors"
    errors = response.validation_errors
    assert errors.error.type == "missing_asset"
    for node_id, file_id in (
        ("3", foreign.file_id),
        ("4", unready.file_id),
        ("5", missing),
    ):
        [item] = errors.node_errors[node_id].errors
        assert item.type == "missing_asset"
        assert file_id in item.message
        assert json.loads(item.extra_info_json) == {
            "input_name": "image",
            "file_id": file_id,
        }
        assert errors.node_errors[node_id].class_type == "LoadImage"


async def test_invalid_workflows_come_back_in_comfyui_shape(stub, make_workflow):
    bad = json.loads(make_workflow())
    bad["1"]["inputs"]["width"] = 0
    response = await submit(stub, tenant(), json.dumps(bad))
    errors = response.validation_errors
    assert errors.error.type == "prompt_outputs_failed_validation"
    assert set(errors.node_errors) == {"1"}
    [item] = errors.node_errors["1"].errors
    assert item.type == "value_smaller_than_min"
    assert json.loads(item.extra_info_json)["input_name"] == "width"
    assert list(errors.node_errors["1"].dependent_outputs) == ["2"]

    unknown = await submit(
        stub, tenant(), make_workflow(**{"3": {"class_type": "Nope", "inputs": {}}})
    )
    assert unknown.validation_errors.error.type == "missing_node_type"
    assert "3" in unknown.validation_errors.node_errors

    ui = await submit(stub, tenant(), json.dumps({"nodes": [], "links": []}))
    assert ui.validation_errors.error.type == "workflow_format_ui"

    garbage = await submit(stub, tenant(), "{not json")
    assert garbage.validation_errors.error.type == "invalid_prompt"


async def test_validate_workflow_answers_without_submitting(stub, make_workflow):
    valid = await stub.ValidateWorkflow(
        pb.ValidateWorkflowRequest(tenant_id=tenant(), workflow_json=make_workflow())
    )
    assert valid.valid
    assert not valid.HasField("errors")
    invalid = await stub.ValidateWorkflow(
        pb.ValidateWorkflowRequest(
            tenant_id=tenant(),
            workflow_json=make_workflow(
                **{"2": {"class_type": "SaveImage", "inputs": {}}}
            ),
        )
    )
    assert not invalid.valid
    assert invalid.errors.node_errors["2"].errors[0].type == "required_input_missing"


async def test_timeout_above_the_maximum_is_invalid_argument(stub, make_workflow):
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await submit(stub, tenant(), make_workflow(), timeout_seconds=10**6)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "timeout_seconds" in (raised.value.details() or "")
    [trailer] = [
        value
        for key, value in raised.value.trailing_metadata() or ()
        if key == "grpc-status-details-bin"
    ]
    [detail] = status_pb2.Status.FromString(trailer).details
    bad_request = error_details_pb2.BadRequest()
    assert detail.Unpack(bad_request)
    assert [v.field for v in bad_request.field_violations] == ["timeout_seconds"]


async def test_idempotency_key_replays_the_same_request_and_refuses_another(
    stub, make_workflow
):
    tenant_id = tenant()
    first = await submit(stub, tenant_id, make_workflow(), idempotency_key="k1")
    # Same body with other spacing and key order: the same request.
    same = json.dumps(json.loads(make_workflow()), indent=2, sort_keys=True)
    again = await submit(stub, tenant_id, same, idempotency_key="k1")
    assert again.replayed
    assert again.job.id == first.job.id

    other_tenant = await submit(stub, tenant(), make_workflow(), idempotency_key="k1")
    assert other_tenant.job.id != first.job.id
    assert not other_tenant.replayed

    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await submit(
            stub,
            tenant_id,
            make_workflow(),
            idempotency_key="k1",
            priority=pb.PRIORITY_LOW,
        )
    assert raised.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert "idempotency_key_reuse" in (raised.value.details() or "")


async def test_concurrent_requests_with_one_key_create_one_job(stub, make_workflow):
    tenant_id = tenant()
    responses = await asyncio.gather(
        *(
            submit(stub, tenant_id, make_workflow(), idempotency_key="race")
            for _ in range(5)
        )
    )
    assert len({response.job.id for response in responses}) == 1
    assert sum(not response.replayed for response in responses) == 1


async def test_get_and_list_are_scoped_to_the_tenant_and_paginated(stub, make_workflow):
    tenant_id = tenant()
    ids = [(await submit(stub, tenant_id, make_workflow())).job.id for _ in range(5)]

    got = await stub.GetJob(pb.GetJobRequest(tenant_id=tenant_id, job_id=ids[0]))
    assert got.id == ids[0]
    for job_id in (ids[0], str(uuid.uuid4()), "not-a-uuid"):
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await stub.GetJob(pb.GetJobRequest(tenant_id=tenant(), job_id=job_id))
        assert raised.value.code() == grpc.StatusCode.NOT_FOUND

    seen: list[str] = []
    cursor = ""
    pages = 0
    while True:
        page = await stub.ListJobs(
            pb.ListJobsRequest(tenant_id=tenant_id, page_size=2, cursor=cursor)
        )
        seen.extend(job.id for job in page.jobs)
        pages += 1
        cursor = page.next_cursor
        if not cursor:
            break
    assert seen == list(reversed(ids))
    assert pages == 3

    empty = await stub.ListJobs(pb.ListJobsRequest(tenant_id=tenant()))
    assert list(empty.jobs) == []

    await stub.CancelJob(pb.CancelJobRequest(tenant_id=tenant_id, job_id=ids[1]))
    cancelled = await stub.ListJobs(
        pb.ListJobsRequest(tenant_id=tenant_id, statuses=[pb.JOB_STATUS_CANCELLED])
    )
    assert [job.id for job in cancelled.jobs] == [ids[1]]

    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.ListJobs(pb.ListJobsRequest(tenant_id=tenant_id, cursor="bogus"))
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_queue_position_orders_by_priority_then_age(stub, make_workflow):
    tenant_id = tenant()
    low = (await submit(stub, tenant_id, make_workflow(), priority=pb.PRIORITY_LOW)).job
    high = (
        await submit(stub, tenant_id, make_workflow(), priority=pb.PRIORITY_HIGH)
    ).job
    low_now = await stub.GetJob(pb.GetJobRequest(tenant_id=tenant_id, job_id=low.id))
    high_now = await stub.GetJob(pb.GetJobRequest(tenant_id=tenant_id, job_id=high.id))
    assert high_now.queue_position < low_now.queue_position


async def test_a_submit_answers_its_place_behind_its_priority_and_those_above(
    stub, private_pool
):
    _, marker = private_pool
    tenant_id = tenant()

    async def put(priority: int) -> pb.Job:
        graph = {"1": {"class_type": marker, "inputs": {"label": uuid.uuid4().hex}}}
        response = await stub.SubmitJob(
            pb.SubmitJobRequest(
                tenant_id=tenant_id, workflow_json=json.dumps(graph), priority=priority
            )
        )
        return response.job

    normal = [await put(pb.PRIORITY_NORMAL) for _ in range(3)]
    assert [job.queue_position for job in normal] == [1, 2, 3]
    high = await put(pb.PRIORITY_HIGH)
    low = await put(pb.PRIORITY_LOW)
    assert (high.queue_position, low.queue_position) == (1, 5)
    for job, place in [(high, 1), (normal[0], 2), (normal[2], 4), (low, 5)]:
        read = await stub.GetJob(pb.GetJobRequest(tenant_id=tenant_id, job_id=job.id))
        assert read.queue_position == place


async def test_cancel_of_a_pending_job_ends_it_and_refuses_its_claim(
    stub, make_workflow
):
    tenant_id = tenant()
    job = (await submit(stub, tenant_id, make_workflow())).job
    cancelled = await stub.CancelJob(
        pb.CancelJobRequest(tenant_id=tenant_id, job_id=job.id)
    )
    assert cancelled.status == pb.JOB_STATUS_CANCELLED
    assert cancelled.HasField("completed_at")
    again = await stub.CancelJob(
        pb.CancelJobRequest(tenant_id=tenant_id, job_id=job.id)
    )
    assert again.status == pb.JOB_STATUS_CANCELLED
    claim = await stub.ClaimJob(
        pb.ClaimJobRequest(tenant_id=tenant_id, job_id=job.id, worker_id="w1")
    )
    assert not claim.granted
    assert claim.reason == "job_cancelled"
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.CancelJob(pb.CancelJobRequest(tenant_id=tenant(), job_id=job.id))
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND


async def test_cancel_of_a_running_job_flags_it_and_broadcasts(
    stub, probe, make_workflow
):
    from comfyserve.contracts.events import JobCancelRequested

    tenant_id = tenant()
    job = (await submit(stub, tenant_id, make_workflow())).job
    await stub.ClaimJob(
        pb.ClaimJobRequest(tenant_id=tenant_id, job_id=job.id, worker_id="w1")
    )
    flagged = await stub.CancelJob(
        pb.CancelJobRequest(tenant_id=tenant_id, job_id=job.id)
    )
    assert flagged.status == pb.JOB_STATUS_RUNNING
    assert flagged.cancel_requested
    await probe.wait_for(job.id, lambda _t, e: isinstance(e, JobCancelRequested))


async def test_claim_grants_a_pending_job_and_refuses_one_under_a_live_lease(
    stub, make_workflow
):
    tenant_id = tenant()
    job = (await submit(stub, tenant_id, make_workflow())).job

    granted = await stub.ClaimJob(
        pb.ClaimJobRequest(tenant_id=tenant_id, job_id=job.id, worker_id="w-live")
    )
    assert granted.granted
    assert granted.attempt == 1
    assert granted.job.status == pb.JOB_STATUS_RUNNING
    assert granted.job.worker_id == "w-live"
    assert granted.assignment.attempt == 1
    assert granted.assignment.lease_seconds == 15
    assert json.loads(granted.assignment.workflow_json)["1"]["class_type"] == (
        "EmptyImage"
    )

    refused = await stub.ClaimJob(
        pb.ClaimJobRequest(tenant_id=tenant_id, job_id=job.id, worker_id="other")
    )
    assert not refused.granted
    assert refused.reason == "running_on_live_worker"
    assert refused.job.attempt == 1
    assert not refused.HasField("assignment")

    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.ClaimJob(
            pb.ClaimJobRequest(tenant_id=tenant(), job_id=job.id, worker_id="x")
        )
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND


async def test_claims_take_over_lapsed_leases_until_attempts_run_out(
    stub, db, make_workflow
):
    tenant_id = tenant()
    job = (await submit(stub, tenant_id, make_workflow())).job
    for attempt in (1, 2, 3):
        claim = await stub.ClaimJob(
            pb.ClaimJobRequest(
                tenant_id=tenant_id, job_id=job.id, worker_id=f"ghost-{attempt}"
            )
        )
        assert claim.granted
        assert claim.attempt == attempt
        await lapse_lease(db, job.id)
    exhausted = await stub.ClaimJob(
        pb.ClaimJobRequest(tenant_id=tenant_id, job_id=job.id, worker_id="ghost-4")
    )
    assert not exhausted.granted
    assert exhausted.reason == "attempts_exhausted"
    assert exhausted.job.status == pb.JOB_STATUS_FAILED
    assert exhausted.job.error.code == "worker_lost"


async def test_watch_streams_the_snapshot_then_changes_until_the_end(
    stub, executor, make_workflow
):
    from comfyserve.contracts.events import (
        JobCompleted,
        JobCompletedData,
        JobProgressData,
        JobProgressed,
        OutputFile,
        OutputKind,
    )

    tenant_id = tenant()
    job = (await submit(stub, tenant_id, make_workflow())).job
    stream = stub.WatchJob(pb.WatchJobRequest(tenant_id=tenant_id, job_id=job.id))
    updates = stream.__aiter__()

    first = await asyncio.wait_for(updates.__anext__(), 10)
    assert first.kind == pb.UPDATE_KIND_STATUS
    assert first.job.status == pb.JOB_STATUS_PENDING

    await stub.ClaimJob(
        pb.ClaimJobRequest(tenant_id=tenant_id, job_id=job.id, worker_id="ww")
    )
    running = await asyncio.wait_for(updates.__anext__(), 10)
    assert running.kind == pb.UPDATE_KIND_STATUS
    assert running.job.status == pb.JOB_STATUS_RUNNING

    output = OutputFile(
        file_id=str(uuid.uuid4()),
        node_id="2",
        index=0,
        filename="test_00001_.png",
        kind=OutputKind.IMAGE,
        content_type="image/png",
        size=99,
        bucket="comfyserve",
        key="outputs/x",
        width=64,
        height=64,
    )
    await executor(
        JobProgressed(
            source="test",
            subject=job.id,
            tenant_id=tenant_id,
            data=JobProgressData(
                attempt=1,
                worker_id="ww",
                fraction=0.5,
                nodes_done=1,
                nodes_total=2,
                outputs=[output],
            ),
        )
    )
    progressed = await asyncio.wait_for(updates.__anext__(), 10)
    assert progressed.kind == pb.UPDATE_KIND_OUTPUT
    assert [o.file_id for o in progressed.new_outputs] == [output.file_id]
    assert progressed.new_outputs[0].kind == pb.OUTPUT_KIND_IMAGE
    assert progressed.job.progress.fraction == 0.5

    await executor(
        JobCompleted(
            source="test",
            subject=job.id,
            tenant_id=tenant_id,
            data=JobCompletedData(
                attempt=1, worker_id="ww", outputs=[output], duration_ms=1200
            ),
        )
    )
    final = await asyncio.wait_for(updates.__anext__(), 10)
    assert final.kind == pb.UPDATE_KIND_STATUS
    assert final.job.status == pb.JOB_STATUS_COMPLETED
    assert final.job.duration_seconds == 1.2
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(updates.__anext__(), 10)


async def test_watch_of_another_tenants_job_is_not_found(stub, make_workflow):
    job = (await submit(stub, tenant(), make_workflow())).job
    stream = stub.WatchJob(pb.WatchJobRequest(tenant_id=tenant(), job_id=job.id))
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        async for _ in stream:
            pass
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND


async def test_without_any_node_catalog_submits_are_unavailable_and_not_ready(
    stub, runtime, db, make_workflow, eventually
):
    channel = insecure_channel(f"127.0.0.1:{runtime.grpc_port}")
    health = health_pb2_grpc.HealthStub(channel)

    async def serving() -> int:
        answer = await health.Check(health_pb2.HealthCheckRequest(service=SERVICE))
        return answer.status

    async def refusal() -> grpc.aio.AioRpcError | None:
        try:
            await submit(stub, tenant(), make_workflow())
        except grpc.aio.AioRpcError as error:
            return error
        return None

    saved = await db.fetch("SELECT * FROM pool_catalogs")
    await db.execute("DELETE FROM pool_catalogs")
    try:
        # Submits validate against the pools as read up to a second ago.
        refused = await eventually(refusal, lambda e: e is not None, within=10)
        assert refused.code() == grpc.StatusCode.UNAVAILABLE
        assert "node catalog" in (refused.details() or "")
        # What a gateway's readiness asks: no job could be accepted now.
        await eventually(serving, lambda s: s == NOT_SERVING, within=10)
    finally:
        await db.executemany(
            "INSERT INTO pool_catalogs"
            " (pool, catalog_hash, object_info, worker_id, updated_at)"
            " VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
            [tuple(row.values()) for row in saved],
        )
    await eventually(serving, lambda s: s == SERVING, within=10)
    assert (await submit(stub, tenant(), make_workflow())).WhichOneof("result") == "job"
    await channel.close()


async def test_sql_errors_never_carry_their_parameters(settings):
    # Bound parameters hold prompt text, and the driver quotes a value it could
    # not take in its message: what the service logs of the error must not.
    engine = create_engine(settings.database_url, settings.schema_)
    try:
        async with engine.connect() as conn:
            with pytest.raises(DBAPIError) as raised:
                await conn.execute(
                    text("SELECT CAST(:prompt AS integer)"),
                    {"prompt": "a secret prompt"},
                )
    finally:
        await engine.dispose()
    assert "[SQL parameters hidden" in str(raised.value)
    assert "a secret prompt" not in describe_error(raised.value)
    assert "a secret prompt" not in format_exception(raised.value)


async def lapse_lease(db, job_id: str) -> None:
    await db.execute(
        "UPDATE jobs SET lease_expires_at = now() - interval '1 second' WHERE id = $1",
        uuid.UUID(job_id),
    )


async def test_numbers_out_of_range_are_named_not_internal(stub, make_workflow):
    graph = make_workflow().replace('"width": 64', '"width": 1e400')
    response = await submit(stub, tenant(), graph)
    error = response.validation_errors.error
    assert "inf" in error.message.lower() or "finite" in error.message.lower()
    assert json.loads(error.extra_info_json) == {
        "node_id": "1",
        "field": "inputs.width",
    }


async def test_a_request_too_large_for_any_event_is_refused_naming_the_input(
    stub, db, make_workflow
):
    # A SaveImage with 80 undeclared inputs of 20,000 characters (1.6 MB): it
    # once passed validation and then blocked the outbox for every tenant.
    graph = json.loads(make_workflow())
    graph["2"]["inputs"].update({f"pad{i}": "x" * 20_000 for i in range(80)})
    tenant_id = tenant()
    response = await submit(stub, tenant_id, json.dumps(graph))
    errors = response.validation_errors
    assert errors.error.type == "prompt_outputs_failed_validation"
    items = errors.node_errors["2"].errors
    names = {json.loads(item.extra_info_json)["input_name"] for item in items}
    assert "pad0" in names
    assert (
        await db.fetchval("SELECT count(*) FROM jobs WHERE tenant_id = $1", tenant_id)
        == 0
    )
