"""The runtime's gRPC server: one mapping of every service's errors, call
metrics, health."""

import asyncio
from collections.abc import AsyncIterator

import grpc
import pytest
import structlog
from google.rpc import error_details_pb2, status_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client import CollectorRegistry

from comfyserve.contracts.pb.workflow.v1 import workflow_pb2 as pb
from comfyserve.contracts.pb.workflow.v1 import workflow_pb2_grpc as pb_grpc
from comfyserve.runtime.errors import ServiceError
from comfyserve.runtime.grpc import (
    STATUS_DETAILS_KEY,
    RpcDetails,
    RpcStatus,
    _traced,
    count_client_calls,
    insecure_channel,
    rpc_details,
    rpc_status,
    serve_grpc,
)

SERVICE = "comfyserve.workflow.v1.WorkflowService"


class Expected(ServiceError):
    code = grpc.StatusCode.INVALID_ARGUMENT

    def __init__(self, field: str) -> None:
        super().__init__(f"{field}: is wrong")
        self.field = field


class Busy(ServiceError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED
    reason = "queue_full"

    def __init__(self) -> None:
        super().__init__("too many queued jobs")
        self.retry_after_s = 2.5


class Unusable(ServiceError):
    code = grpc.StatusCode.INVALID_ARGUMENT

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


class Gone(ServiceError):
    code = grpc.StatusCode.NOT_FOUND


def test_a_field_error_names_the_field_and_its_problem() -> None:
    assert rpc_status(Unusable("job_id", "is wrong")) == RpcStatus(
        grpc.StatusCode.INVALID_ARGUMENT,
        "job_id: is wrong",
        field="job_id",
        problem="is wrong",
    )


def test_a_retry_error_gives_its_reason_and_when_to_retry() -> None:
    assert rpc_status(Busy()) == RpcStatus(
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        "too many queued jobs",
        reason="queue_full",
        retry_after_s=2.5,
    )


def test_a_plain_error_is_its_code_and_message() -> None:
    assert rpc_status(Gone("job 'j' not found")) == RpcStatus(
        grpc.StatusCode.NOT_FOUND, "job 'j' not found"
    )


def test_the_base_error_is_internal() -> None:
    assert rpc_status(ServiceError("broken")) == RpcStatus(
        grpc.StatusCode.INTERNAL, "broken"
    )


def test_any_other_exception_is_not_expected() -> None:
    assert rpc_status(KeyError("secret value")) is None


class Servicer(pb_grpc.WorkflowServiceServicer):
    async def GetJob(self, request, context):
        if request.job_id == "bad":
            raise Expected("job_id")
        if request.job_id == "busy":
            raise Busy()
        if request.job_id == "bug":
            raise KeyError("secret value")
        # What the handler's log lines would carry.
        bound = structlog.contextvars.get_contextvars()
        return pb.Job(id=bound.get("job_id", ""), tenant_id=bound.get("tenant_id", ""))

    async def WatchJob(self, request, context) -> AsyncIterator[pb.JobUpdate]:
        yield pb.JobUpdate(job=pb.Job(id=request.job_id))
        raise Expected("job_id")


@pytest.fixture
async def served():
    registry = CollectorRegistry()
    async with serve_grpc(
        service=SERVICE,
        add_servicers=lambda server: pb_grpc.add_WorkflowServiceServicer_to_server(
            Servicer(), server
        ),
        registry=registry,
        metrics_prefix="test",
        address="127.0.0.1:0",
        serving=False,
    ) as server:
        channel = insecure_channel(f"127.0.0.1:{server.port}")
        yield server, pb_grpc.WorkflowServiceStub(channel), channel, registry
        await channel.close()


async def counted(registry, method: str, code: str) -> float | None:
    """The calls counted so far: a call is counted just after it is answered."""
    labels = {"method": method, "code": code}
    async with asyncio.timeout(5):
        while True:
            value = registry.get_sample_value("test_grpc_requests_total", labels)
            if value is not None:
                return value
            await asyncio.sleep(0.01)


def violations(error: grpc.aio.AioRpcError) -> list[str]:
    [trailer] = [v for k, v in error.trailing_metadata() if k == STATUS_DETAILS_KEY]
    [detail] = status_pb2.Status.FromString(trailer).details
    bad_request = error_details_pb2.BadRequest()
    assert detail.Unpack(bad_request)
    return [v.field for v in bad_request.field_violations]


async def test_an_expected_error_is_answered_naming_its_field(served) -> None:
    _, stub, _, registry = served
    assert (await stub.GetJob(pb.GetJobRequest(job_id="ok"))).id == "ok"

    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.GetJob(pb.GetJobRequest(job_id="bad"))

    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert violations(raised.value) == ["job_id"]
    assert await counted(registry, "GetJob", "OK") == 1
    assert await counted(registry, "GetJob", "INVALID_ARGUMENT") == 1


async def test_a_calls_log_lines_name_its_job_and_tenant(served) -> None:
    _, stub, _, _ = served
    job = await stub.GetJob(pb.GetJobRequest(tenant_id="t-1", job_id="j-1"))
    assert (job.id, job.tenant_id) == ("j-1", "t-1")
    # Bound for that call only.
    assert "job_id" not in structlog.contextvars.get_contextvars()


async def test_details_tell_the_caller_the_field_reason_and_retry(served) -> None:
    _, stub, _, _ = served
    with pytest.raises(grpc.aio.AioRpcError) as busy:
        await stub.GetJob(pb.GetJobRequest(job_id="busy"))
    with pytest.raises(grpc.aio.AioRpcError) as bad:
        await stub.GetJob(pb.GetJobRequest(job_id="bad"))
    with pytest.raises(grpc.aio.AioRpcError) as bug:
        await stub.GetJob(pb.GetJobRequest(job_id="bug"))

    assert busy.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert rpc_details(busy.value) == RpcDetails({}, "queue_full", 2.5)
    assert rpc_details(bad.value) == RpcDetails({"job_id": "job_id: is wrong"})
    assert rpc_details(bug.value) == RpcDetails({})


async def test_anything_else_is_internal_and_says_nothing(served) -> None:
    _, stub, _, registry = served
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.GetJob(pb.GetJobRequest(job_id="bug"))

    assert raised.value.code() == grpc.StatusCode.INTERNAL
    assert raised.value.details() == "internal error"
    assert await counted(registry, "GetJob", "INTERNAL") == 1


async def test_a_stream_that_fails_midway_is_answered_the_same_way(served) -> None:
    _, stub, _, _ = served
    call = stub.WatchJob(pb.WatchJobRequest(job_id="j"))
    first = await call.read()
    assert first.job.id == "j"
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call.read()
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert violations(raised.value) == ["job_id"]


async def client_counted(registry, method: str, code: str) -> float:
    """The calls this process's channels made: counted once the status came."""
    labels = {"service": SERVICE, "method": method, "code": code}
    async with asyncio.timeout(5):
        while True:
            value = registry.get_sample_value(
                "caller_grpc_client_requests_total", labels
            )
            if value is not None:
                return value
            await asyncio.sleep(0.01)


async def test_a_channels_calls_are_counted_by_method_and_code(served) -> None:
    _, stub, _, _ = served
    # Counted from then on, on channels made before too.
    calls = CollectorRegistry()
    count_client_calls(calls, "caller")
    await stub.GetJob(pb.GetJobRequest(job_id="ok"))
    with pytest.raises(grpc.aio.AioRpcError):
        await stub.GetJob(pb.GetJobRequest(job_id="bad"))
    stream = stub.WatchJob(pb.WatchJobRequest(job_id="j"))
    assert (await stream.read()).job.id == "j"
    with pytest.raises(grpc.aio.AioRpcError):
        await stream.read()

    assert await client_counted(calls, "GetJob", "OK") == 1
    assert await client_counted(calls, "GetJob", "INVALID_ARGUMENT") == 1
    assert await client_counted(calls, "WatchJob", "INVALID_ARGUMENT") == 1
    timed = {"service": SERVICE, "method": "GetJob"}
    assert (
        calls.get_sample_value(
            "caller_grpc_client_request_duration_seconds_count", timed
        )
        == 2
    )


async def test_health_serves_the_process_and_the_service_as_told(served) -> None:
    server, _, channel, _ = served
    health = health_pb2_grpc.HealthStub(channel)

    async def status(name: str) -> int:
        answer = await health.Check(health_pb2.HealthCheckRequest(service=name))
        return answer.status

    serving = health_pb2.HealthCheckResponse.SERVING
    assert await status("") == serving
    assert await status(SERVICE) == health_pb2.HealthCheckResponse.NOT_SERVING
    await server.set_serving(SERVICE, True)
    assert await status(SERVICE) == serving


@pytest.mark.parametrize("encode", [str.encode, str], ids=["made", "served"])
def test_health_checks_get_no_span_and_every_other_call_does(encode) -> None:
    # A call made names its method in bytes, a call served in text.
    def call(method: str) -> grpc.aio.ClientCallDetails:
        return grpc.aio.ClientCallDetails(encode(method), None, None, None, None)

    assert not _traced(call("/grpc.health.v1.Health/Check"))
    assert not _traced(call("/grpc.health.v1.Health/Watch"))
    assert _traced(call(f"/{SERVICE}/GetJob"))
    assert _traced(call("/grpc.health.v1.Healthy/Check"))
