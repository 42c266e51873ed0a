"""ClaimJob retries against an in-process gRPC server."""

from __future__ import annotations

import grpc
import pytest

from comfyserve.contracts.pb.workflow.v1 import workflow_pb2 as wf
from comfyserve.contracts.pb.workflow.v1 import workflow_pb2_grpc as wf_grpc
from comfyserve.executor.adapters.workflow import GrpcClaims
from comfyserve.executor.jobs.models import Claim


class Workflow(wf_grpc.WorkflowServiceServicer):
    def __init__(self, failures: list[grpc.StatusCode]) -> None:
        self.failures = failures
        self.calls = 0

    async def ClaimJob(self, request, context):
        self.calls += 1
        if self.failures:
            await context.abort(self.failures.pop(0), "not now")
        if request.job_id == "done":
            return wf.ClaimJobResponse(granted=False, reason="job has ended")
        return wf.ClaimJobResponse(granted=True, attempt=3)


@pytest.fixture
async def serve():
    servers = []

    async def start(servicer):
        server = grpc.aio.server()
        wf_grpc.add_WorkflowServiceServicer_to_server(servicer, server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        servers.append(server)
        return grpc.aio.insecure_channel(f"127.0.0.1:{port}")

    yield start
    for server in servers:
        await server.stop(None)


async def no_wait(_: float) -> None:
    return None


async def test_unavailable_is_retried_until_granted(serve):
    codes = [grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.INTERNAL]
    servicer = Workflow(codes)
    async with await serve(servicer) as channel:
        claims = GrpcClaims(channel, 5.0, sleep=no_wait)

        assert await claims.claim("t", "job", "w") == Claim(True, attempt=3)
    assert servicer.calls == 3


async def test_refusals_and_not_found_skip_the_job(serve):
    servicer = Workflow([grpc.StatusCode.NOT_FOUND])
    async with await serve(servicer) as channel:
        claims = GrpcClaims(channel, 5.0, sleep=no_wait)

        missing = await claims.claim("t", "job", "w")
        ended = await claims.claim("t", "done", "w")

    assert not missing.granted
    assert "NOT_FOUND" in missing.reason
    assert ended == Claim(False, reason="job has ended")
