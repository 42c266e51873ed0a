"""WorkflowService.AcquireJob and RenewLeases: how this worker is dispatched."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC

import grpc
import structlog

from comfyserve.contracts.events import InputFile
from comfyserve.contracts.pb.workflow.v1 import workflow_pb2 as wf
from comfyserve.contracts.pb.workflow.v1 import workflow_pb2_grpc as wf_grpc
from comfyserve.executor.errors import DispatchUnavailable
from comfyserve.executor.jobs.models import (
    Assignment,
    FileInputRef,
    LeaseState,
    LeaseStatus,
)

log = structlog.get_logger(__name__)

_EXPECTED_OUTAGES = frozenset(
    {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED}
)
# Answers no retry can change (a wrong pool name, a workflow service without
# AcquireJob, a refused credential): the worker stops and says why.
_MISCONFIGURED = frozenset(
    {
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.UNIMPLEMENTED,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.UNAUTHENTICATED,
    }
)


class DispatchRefused(Exception):
    """The workflow service refuses this worker's AcquireJob for good."""


_LEASE_FROM_PB = {
    wf.LEASE_STATE_HELD: LeaseState.HELD,
    wf.LEASE_STATE_CANCEL_REQUESTED: LeaseState.CANCEL_REQUESTED,
    wf.LEASE_STATE_LOST: LeaseState.LOST,
    wf.LEASE_STATE_ENDED: LeaseState.ENDED,
}


def assignment_from_pb(message: wf.Assignment) -> Assignment:
    job = message.job
    return Assignment(
        job_id=job.id,
        tenant_id=job.tenant_id,
        attempt=message.attempt,
        graph=json.loads(message.workflow_json),
        timeout_seconds=job.timeout_seconds,
        deadline=job.deadline.ToDatetime(tzinfo=UTC),
        lease_seconds=message.lease_seconds,
        inputs=tuple(
            InputFile(
                file_id=item.file_id,
                node_id=item.node_id,
                input_name=item.input_name,
                filename=item.filename,
                bucket=item.bucket,
                key=item.key,
                content_type=item.content_type,
                size=item.size,
                sha256=item.sha256 or None,
            )
            for item in message.inputs
        ),
        file_inputs=tuple(
            FileInputRef(node_id=ref.node_id, input_name=ref.input_name)
            for ref in message.file_inputs
        ),
        partner_key=message.partner_key or None,
        traceparent=message.traceparent or None,
    )


class GrpcDispatch:
    def __init__(
        self,
        channel: grpc.aio.Channel,
        timeout_s: float,
        *,
        backoff_max_s: float = 5.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._stub = wf_grpc.WorkflowServiceStub(channel)
        self._timeout_s = timeout_s
        self._backoff_max_s = backoff_max_s
        self._sleep = sleep

    async def acquire(
        self, worker_id: str, pool: str, wait_s: float
    ) -> Assignment | None:
        request = wf.AcquireJobRequest(
            worker_id=worker_id, pool=pool, wait_seconds=wait_s
        )
        delay = 0.2
        while True:
            try:
                answer = await self._stub.AcquireJob(
                    request, timeout=wait_s + self._timeout_s
                )
            except grpc.aio.AioRpcError as exc:
                code = exc.code()
                if code in _MISCONFIGURED:
                    raise DispatchRefused(f"{code.name}: {exc.details()}") from exc
                level = log.warning if code in _EXPECTED_OUTAGES else log.error
                level("executor.acquire.retry", code=code.name, details=exc.details())
                await self._sleep(delay)
                delay = min(delay * 2, self._backoff_max_s)
                continue
            if not answer.HasField("assignment"):
                return None
            return assignment_from_pb(answer.assignment)

    async def renew(
        self, worker_id: str, leases: Sequence[tuple[str, int]]
    ) -> list[LeaseStatus]:
        request = wf.RenewLeasesRequest(
            worker_id=worker_id,
            leases=[wf.Lease(job_id=job_id, attempt=a) for job_id, a in leases],
        )
        try:
            answer = await self._stub.RenewLeases(request, timeout=self._timeout_s)
        except grpc.aio.AioRpcError as exc:
            raise DispatchUnavailable(f"{exc.code().name}: {exc.details()}") from exc
        return [
            LeaseStatus(
                job_id=item.job_id,
                attempt=item.attempt,
                state=_LEASE_FROM_PB.get(item.state, LeaseState.LOST),
            )
            for item in answer.leases
        ]
