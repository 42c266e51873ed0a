"""AcquireJob and RenewLeases against an in-process gRPC server."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from comfyserve.contracts.events import InputFile
from comfyserve.contracts.pb.workflow.v1 import workflow_pb2 as wf
from comfyserve.contracts.pb.workflow.v1 import workflow_pb2_grpc as wf_grpc
from comfyserve.executor.adapters.workflow import (
    DispatchRefused,
    GrpcDispatch,
    assignment_from_pb,
)
from comfyserve.executor.errors import DispatchUnavailable
from comfyserve.executor.jobs.models import (
    Assignment,
    FileInputRef,
    LeaseState,
    LeaseStatus,
)

DEADLINE = datetime(2026, 1, 1, 12, 30, tzinfo=UTC)
GRAPH = {"1": {"class_type": "LoadImage", "inputs": {"image": "in.png"}}}


def assignment_pb() -> wf.Assignment:
    deadline = Timestamp()
    deadline.FromDatetime(DEADLINE)
    return wf.Assignment(
        job=wf.Job(
            id="job-1",
            tenant_id="tenant-a",
            timeout_seconds=60,
            deadline=deadline,
            pool="gpu-a",
            # The submitted graph; the assignment's own is the one to run.
            workflow_json='{"1": {"class_type": "LoadImage", "inputs": {}}}',
        ),
        attempt=3,
        workflow_json=json.dumps(GRAPH),
        inputs=[
            wf.InputFile(
                file_id="f-1",
                node_id="1",
                input_name="image",
                filename="in.png",
                bucket="b",
                key="inputs/tenant-a/f-1",
                content_type="image/png",
                size=3,
                sha256="ab" * 32,
            ),
            wf.InputFile(
                file_id="f-2",
                node_id="2",
                input_name="mask",
                filename="mask.png",
                bucket="b",
                key="inputs/tenant-a/f-2",
                content_type="image/png",
                size=4,
            ),
        ],
        file_inputs=[
            wf.InputRef(node_id="1", input_name="image"),
            wf.InputRef(node_id="4", input_name="image"),
        ],
        lease_seconds=15.0,
    )


EXPECTED = Assignment(
    job_id="job-1",
    tenant_id="tenant-a",
    attempt=3,
    graph=GRAPH,
    timeout_seconds=60,
    deadline=DEADLINE,
    lease_seconds=15.0,
    inputs=(
        InputFile(
            file_id="f-1",
            node_id="1",
            input_name="image",
            filename="in.png",
            bucket="b",
            key="inputs/tenant-a/f-1",
            content_type="image/png",
            size=3,
            sha256="ab" * 32,
        ),
        InputFile(
            file_id="f-2",
            node_id="2",
            input_name="mask",
            filename="mask.png",
            bucket="b",
            key="inputs/tenant-a/f-2",
            content_type="image/png",
            size=4,
            sha256=None,
        ),
    ),
    file_inputs=(FileInputRef("1", "image"), FileInputRef("4", "image")),
)


class Workflow(wf_grpc.WorkflowServiceServicer):
    """Answers each call with the next of `failures` (an abort) while any are
    left; AcquireJob then grants the next of `grants` (none left: no job)."""

    def __init__(self) -> None:
        self.failures: list[grpc.StatusCode] = []
        self.grants: list[wf.Assignment] = []
        self.states: dict[str, wf.LeaseState.ValueType] = {}
        self.acquires: list[tuple[wf.AcquireJobRequest, float | None]] = []
        self.renewals: list[wf.RenewLeasesRequest] = []
        self.hang = asyncio.Event()

    async def AcquireJob(self, request, context):
        self.acquires.append((request, context.time_remaining()))
        if self.failures:
            await context.abort(self.failures.pop(0), "not now")
        if not self.grants:
            return wf.AcquireJobResponse()
        return wf.AcquireJobResponse(assignment=self.grants.pop(0))

    async def RenewLeases(self, request, context):
        self.renewals.append(request)
        if self.failures:
            await context.abort(self.failures.pop(0), "not now")
        if self.hang.is_set():
            await asyncio.Event().wait()
        return wf.RenewLeasesResponse(
            leases=[
                wf.LeaseStatus(
                    job_id=lease.job_id,
                    attempt=lease.attempt,
                    state=self.states.get(lease.job_id, wf.LEASE_STATE_HELD),
                )
                for lease in request.leases
            ],
            lease_seconds=15.0,
        )


Serve = Callable[[Workflow], Awaitable[grpc.aio.Channel]]


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    servers: list[grpc.aio.Server] = []

    async def start(servicer: Workflow) -> grpc.aio.Channel:
        server = grpc.aio.server()
        wf_grpc.add_WorkflowServiceServicer_to_server(servicer, server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        servers.append(server)
        return grpc.aio.insecure_channel(f"127.0.0.1:{port}")

    yield start
    for server in servers:
        await server.stop(None)


class Sleeps:
    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


def test_assignment_from_pb_maps_every_field():
    assignment = assignment_from_pb(assignment_pb())

    assert assignment == EXPECTED
    assert assignment.deadline.tzinfo is not None


async def test_acquire_asks_for_the_pool_and_maps_the_grant(serve):
    servicer = Workflow()
    servicer.grants.append(assignment_pb())
    async with await serve(servicer) as channel:
        dispatch = GrpcDispatch(channel, 5.0)

        assignment = await dispatch.acquire("w-1", "gpu-a", 0.5)

    assert assignment == EXPECTED
    [(request, remaining)] = servicer.acquires
    assert (request.worker_id, request.pool, request.wait_seconds) == (
        "w-1",
        "gpu-a",
        0.5,
    )
    # The call outlives the long-poll's wait by the gRPC timeout.
    assert remaining is not None
    assert 5.0 < remaining <= 5.5


async def test_acquire_without_a_job_answers_none(serve):
    servicer = Workflow()
    async with await serve(servicer) as channel:
        assert await GrpcDispatch(channel, 5.0).acquire("w-1", "default", 0) is None


async def test_acquire_retries_with_backoff_while_the_service_is_away(serve):
    servicer = Workflow()
    servicer.failures = [
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.INTERNAL,
    ]
    servicer.grants.append(assignment_pb())
    sleeps = Sleeps()
    async with await serve(servicer) as channel:
        dispatch = GrpcDispatch(channel, 5.0, backoff_max_s=0.5, sleep=sleeps)

        assignment = await dispatch.acquire("w-1", "gpu-a", 0)

    assert assignment == EXPECTED
    assert len(servicer.acquires) == 5
    assert sleeps.delays == [0.2, 0.4, 0.5, 0.5]


@pytest.mark.parametrize(
    "code", [grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.UNIMPLEMENTED]
)
async def test_acquire_refused_for_good_stops_instead_of_retrying(serve, code):
    servicer = Workflow()
    servicer.failures = [code]
    async with await serve(servicer) as channel:
        dispatch = GrpcDispatch(channel, 5.0, sleep=Sleeps())
        with pytest.raises(DispatchRefused, match=code.name):
            await dispatch.acquire("w-1", "bad pool", 0)
    assert len(servicer.acquires) == 1


async def test_renew_sends_the_leases_and_maps_each_state(serve):
    servicer = Workflow()
    servicer.states = {
        "cancel": wf.LEASE_STATE_CANCEL_REQUESTED,
        "lost": wf.LEASE_STATE_LOST,
        "ended": wf.LEASE_STATE_ENDED,
        "unknown": wf.LEASE_STATE_UNSPECIFIED,
    }
    leases = [("held", 1), ("cancel", 2), ("lost", 3), ("ended", 4), ("unknown", 5)]
    async with await serve(servicer) as channel:
        statuses = await GrpcDispatch(channel, 5.0).renew("w-1", leases)

    [request] = servicer.renewals
    assert request.worker_id == "w-1"
    assert [(lease.job_id, lease.attempt) for lease in request.leases] == leases
    assert statuses == [
        LeaseStatus("held", 1, LeaseState.HELD),
        LeaseStatus("cancel", 2, LeaseState.CANCEL_REQUESTED),
        LeaseStatus("lost", 3, LeaseState.LOST),
        LeaseStatus("ended", 4, LeaseState.ENDED),
        # A state this worker does not know: never keep running on it.
        LeaseStatus("unknown", 5, LeaseState.LOST),
    ]


async def test_a_failed_renewal_raises_dispatch_unavailable_at_once(serve):
    servicer = Workflow()
    servicer.failures = [grpc.StatusCode.UNAVAILABLE]
    async with await serve(servicer) as channel:
        dispatch = GrpcDispatch(channel, 5.0)

        with pytest.raises(DispatchUnavailable, match="UNAVAILABLE: not now"):
            await dispatch.renew("w-1", [("job-1", 1)])

    assert len(servicer.renewals) == 1


async def test_a_renewal_gives_up_after_the_grpc_timeout(serve):
    servicer = Workflow()
    servicer.hang.set()
    async with await serve(servicer) as channel:
        dispatch = GrpcDispatch(channel, 0.2)

        with pytest.raises(DispatchUnavailable, match="DEADLINE_EXCEEDED"):
            await dispatch.renew("w-1", [("job-1", 1)])


def test_the_partner_key_is_mapped_and_hidden_from_repr():
    message = assignment_pb()
    assert assignment_from_pb(message).partner_key is None

    message.partner_key = "pk-adapter-secret"
    assignment = assignment_from_pb(message)

    assert assignment.partner_key == "pk-adapter-secret"
    assert "pk-adapter-secret" not in repr(assignment)
