"""The production wiring against an in-process gRPC server: real stubs, real errors."""

import json

import grpc
import pytest
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from comfyserve.contracts.pb.workflow.v1 import workflow_pb2 as wf
from comfyserve.contracts.pb.workflow.v1 import workflow_pb2_grpc as wf_grpc
from comfyserve.gateway.adapters.workflow import WORKFLOW_SERVICE

JOB_ID = "11111111-1111-4111-8111-111111111111"


class Workflow(wf_grpc.WorkflowServiceServicer):
    def __init__(self):
        self.tenants = []

    async def GetJob(self, request, context):
        self.tenants.append(request.tenant_id)
        if request.job_id != JOB_ID:
            await context.abort(grpc.StatusCode.NOT_FOUND, "job not found")
        return wf.Job(
            id=JOB_ID, tenant_id=request.tenant_id, status=wf.JOB_STATUS_RUNNING
        )

    async def SubmitJob(self, request, context):
        bad_request = error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(
                    field="webhook_url", description="resolves to a private address"
                )
            ]
        )
        status = status_pb2.Status(
            code=code_pb2.INVALID_ARGUMENT, message="webhook_url is not allowed"
        )
        status.details.add().Pack(bad_request)
        await context.abort(
            grpc.StatusCode.INVALID_ARGUMENT,
            "webhook_url is not allowed",
            trailing_metadata=(
                ("grpc-status-details-bin", status.SerializeToString()),
            ),
        )

    async def WatchJob(self, request, context):
        if request.job_id != JOB_ID:
            await context.abort(grpc.StatusCode.NOT_FOUND, "job not found")
        yield wf.JobUpdate(
            job=wf.Job(id=JOB_ID, status=wf.JOB_STATUS_RUNNING),
            kind=wf.UPDATE_KIND_STATUS,
        )
        yield wf.JobUpdate(
            job=wf.Job(id=JOB_ID, status=wf.JOB_STATUS_CANCELLED),
            kind=wf.UPDATE_KIND_STATUS,
        )


@pytest.fixture
async def grpc_target():
    server = grpc.aio.server()
    servicer = Workflow()
    wf_grpc.add_WorkflowServiceServicer_to_server(servicer, server)
    health_servicer = health.aio.HealthServicer()
    await health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    await health_servicer.set(WORKFLOW_SERVICE, health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    yield f"127.0.0.1:{port}", servicer, health_servicer
    await server.stop(grace=None)


@pytest.fixture
async def real_client(grpc_target, settings, serve_app):
    from comfyserve.gateway.app import create_app

    target, _, _ = grpc_target
    app = create_app(
        settings.model_copy(
            update={
                "workflow_grpc_target": target,
                "storage_grpc_target": target,
                # Nothing listens on port 1: Redis is down.
                "redis_url": "redis://127.0.0.1:1/0",
            }
        )
    )
    async with serve_app(app) as client:
        yield client


async def test_calls_carry_the_tenant_and_answers_are_translated(
    real_client, grpc_target, auth_a, tenant_a
):
    _, servicer, _ = grpc_target

    found = await real_client.get(f"/workflows/{JOB_ID}", headers=auth_a)
    missing = await real_client.get(
        "/workflows/22222222-2222-4222-8222-222222222222", headers=auth_a
    )

    assert found.status_code == 200
    assert found.json()["status"] == "running"
    assert missing.status_code == 404
    assert missing.json() == {"error": "not_found", "detail": "job not found"}
    assert servicer.tenants == [tenant_a, tenant_a]


async def test_field_violations_travel_in_the_status_details(real_client, auth_a):
    response = await real_client.post(
        "/workflows/execute",
        headers=auth_a,
        json={"workflow": {"1": {"class_type": "X", "inputs": {}}}},
    )

    assert response.status_code == 422
    assert response.json()["fields"] == [
        {"field": "webhook_url", "message": "resolves to a private address"}
    ]


async def test_events_stream_from_watchjob(real_client, auth_a):
    response = await real_client.get(f"/workflows/{JOB_ID}/events", headers=auth_a)
    missing = await real_client.get(
        "/workflows/22222222-2222-4222-8222-222222222222/events", headers=auth_a
    )

    statuses = [
        json.loads(line[len("data:") :])["status"]
        for line in response.text.splitlines()
        if line.startswith("data:")
    ]
    assert statuses == ["running", "cancelled"]
    assert missing.status_code == 404


async def test_readiness_checks_grpc_health_and_redis(real_client):
    response = await real_client.get("/health/ready")

    assert response.status_code == 503
    assert response.json()["checks"] == {
        "workflow": "ok",
        "storage": "ok",
        "redis": "failed",
    }
    assert response.json()["failed"] == ["redis"]


async def test_readiness_fails_while_the_workflow_service_cannot_take_jobs(
    real_client, grpc_target
):
    # The process is up ("" serves) but no node catalog exists yet.
    _, _, health_servicer = grpc_target
    await health_servicer.set(
        WORKFLOW_SERVICE, health_pb2.HealthCheckResponse.NOT_SERVING
    )

    response = await real_client.get("/health/ready")

    assert response.status_code == 503
    body = response.json()
    assert body["error"] == "not_ready"
    assert body["failed"] == ["workflow", "redis"]
    assert body["checks"]["storage"] == "ok"
    assert "workflow" in body["detail"]
