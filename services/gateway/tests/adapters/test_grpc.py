"""The production wiring against an in-process gRPC server: real stubs, real errors."""

import json

import grpc
import pytest
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from pydantic import SecretStr

from comfyserve.contracts.pb.workflow.v1 import workflow_pb2 as wf
from comfyserve.contracts.pb.workflow.v1 import workflow_pb2_grpc as wf_grpc
from comfyserve.gateway.adapters.workflow import WORKFLOW_SERVICE
from comfyserve.gateway.app import create_app
from comfyserve.gateway.settings import Settings
from comfyserve.runtime.grpc import create_server

JOB_ID = "11111111-1111-4111-8111-111111111111"


class Workflow(wf_grpc.WorkflowServiceServicer):
    def __init__(self):
        self.tenants = []
        self.workflow_sizes = []

    async def GetJob(self, request, context):
        self.tenants.append(request.tenant_id)
        if request.job_id != JOB_ID:
            await context.abort(grpc.StatusCode.NOT_FOUND, "job not found")
        return wf.Job(
            id=JOB_ID, tenant_id=request.tenant_id, status=wf.JOB_STATUS_RUNNING
        )

    async def SubmitJob(self, request, context):
        if not request.HasField("webhook_url"):
            self.workflow_sizes.append(len(request.workflow_json))
            # The job comes back whole, graph included, as the service sends it.
            job = wf.Job(
                id=JOB_ID,
                status=wf.JOB_STATUS_PENDING,
                workflow_json=request.workflow_json,
            )
            return wf.SubmitJobResponse(job=job)
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
    # Sized like the product's servers, so only the gateway's limits apply.
    server = create_server()
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
def real_settings(grpc_target, settings):
    target, _, _ = grpc_target
    return settings.model_copy(
        update={
            "workflow_grpc_target": target,
            "storage_grpc_target": target,
            # Nothing listens on port 1: Redis is down.
            "redis_url": "redis://127.0.0.1:1/0",
        }
    )


@pytest.fixture
async def real_client(real_settings, serve_app):
    async with serve_app(create_app(real_settings)) as client:
        yield client


@pytest.fixture
def live_key(unique):
    """A bootstrap key of this test's own, so its rate limit bucket is too."""
    return f"test-key-{unique}"


@pytest.fixture
def live_settings(real_settings, stack, live_key):
    """As `real_settings`, with the stack's Redis: writes are let through."""
    return real_settings.model_copy(
        update={"redis_url": stack["REDIS_URL"], "api_keys": [SecretStr(live_key)]}
    )


@pytest.fixture
async def live_client(live_settings, serve_app):
    async with serve_app(create_app(live_settings)) as client:
        yield client


@pytest.fixture
def live_auth(live_key):
    return {"Authorization": f"Bearer {live_key}"}


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


async def test_without_redis_a_write_is_refused_and_a_read_served(
    real_client, grpc_target, auth_a
):
    _, servicer, _ = grpc_target
    write = await real_client.post(
        "/workflows/execute",
        headers=auth_a,
        json={"workflow": {"1": {"class_type": "X", "inputs": {}}}},
    )
    read = await real_client.get(f"/workflows/{JOB_ID}", headers=auth_a)

    assert write.status_code == 503
    assert write.json()["error"] == "limits_unavailable"
    assert "Redis cannot be reached" in write.json()["detail"]
    assert write.headers["Retry-After"] == "5"
    assert servicer.workflow_sizes == []
    assert read.status_code == 200
    assert "RateLimit" not in read.headers


@pytest.mark.integration
async def test_field_violations_travel_in_the_status_details(live_client, live_auth):
    response = await live_client.post(
        "/workflows/execute",
        headers=live_auth,
        json={
            "workflow": {"1": {"class_type": "X", "inputs": {}}},
            "webhook_url": "http://10.0.0.1/hook",
        },
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


def _execute_body(size):
    """A JSON body to /workflows/execute of exactly `size` bytes."""

    def body(text):
        graph = {"1": {"class_type": "X", "inputs": {"t": text}}}
        return json.dumps({"workflow": graph}).encode()

    return body("x" * (size - len(body(""))))


@pytest.mark.integration
async def test_a_body_over_grpcs_default_size_reaches_the_service(
    live_settings, serve_app, grpc_target, live_auth
):
    # gRPC receives 4 MiB by default; the product's channels take larger
    # messages both ways, here the job that echoes the graph.
    raised = live_settings.model_copy(update={"max_body_bytes": 6 * 1024 * 1024})
    body = _execute_body(5 * 1024 * 1024)

    async with serve_app(create_app(raised)) as client:
        response = await client.post(
            "/workflows/execute",
            headers={**live_auth, "Content-Type": "application/json"},
            content=body,
        )

    assert response.status_code == 202, response.text
    assert grpc_target[1].workflow_sizes[0] > 4 * 1024 * 1024


@pytest.mark.integration
async def test_by_default_the_gateway_refuses_a_large_body_before_grpc(
    grpc_target, serve_app, live_key, live_auth, stack
):
    target, servicer, _ = grpc_target
    defaults = Settings(
        api_keys=[SecretStr(live_key)],
        workflow_grpc_target=target,
        storage_grpc_target=target,
        redis_url=stack["REDIS_URL"],
    )
    body = _execute_body(defaults.max_body_bytes + 1)

    async with serve_app(create_app(defaults)) as client:
        response = await client.post(
            "/workflows/execute",
            headers={**live_auth, "Content-Type": "application/json"},
            content=body,
        )

    assert response.status_code == 413
    assert response.json()["limit_bytes"] == defaults.max_body_bytes
    assert servicer.workflow_sizes == []
    async with serve_app(create_app(defaults)) as client:
        just_fits = await client.post(
            "/workflows/execute",
            headers={**live_auth, "Content-Type": "application/json"},
            content=_execute_body(defaults.max_body_bytes),
        )
    assert just_fits.status_code == 202
