"""`WorkflowService` over gRPC: decode, call one service, encode. Errors become
status codes in `rpc_status`, which the runtime's interceptor applies to every
call."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import grpc

from comfyserve.contracts.pb.workflow.v1 import workflow_pb2 as pb
from comfyserve.contracts.pb.workflow.v1 import workflow_pb2_grpc
from comfyserve.runtime.grpc import RpcStatus
from comfyserve.workflow.errors import ErrorStatus, InvalidArgumentError, WorkflowError
from comfyserve.workflow.jobs.cancellation import CancelService
from comfyserve.workflow.jobs.claims import ClaimService
from comfyserve.workflow.jobs.messages import (
    LEASE_TO_PB,
    UPDATE_TO_PB,
    assignment_to_pb,
    job_to_pb,
    output_to_pb,
    priority_from_pb,
    status_filter,
    validation_errors_to_pb,
)
from comfyserve.workflow.jobs.reads import JobReader
from comfyserve.workflow.jobs.submission import SubmissionService, SubmitRequest

Context = grpc.aio.ServicerContext[Any, Any]

STATUS_CODES: Mapping[ErrorStatus, grpc.StatusCode] = {
    ErrorStatus.INVALID_ARGUMENT: grpc.StatusCode.INVALID_ARGUMENT,
    ErrorStatus.NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    ErrorStatus.ALREADY_EXISTS: grpc.StatusCode.ALREADY_EXISTS,
    ErrorStatus.UNAVAILABLE: grpc.StatusCode.UNAVAILABLE,
    ErrorStatus.INTERNAL: grpc.StatusCode.INTERNAL,
}


def rpc_status(error: Exception) -> RpcStatus | None:
    """The answer to one of this service's errors; None for anything else,
    which the interceptor logs and answers INTERNAL."""
    if isinstance(error, InvalidArgumentError):
        return RpcStatus(
            grpc.StatusCode.INVALID_ARGUMENT,
            error.message,
            field=error.field,
            problem=error.problem,
        )
    if isinstance(error, WorkflowError):
        return RpcStatus(STATUS_CODES[error.status], error.message)
    return None


@dataclass(frozen=True, slots=True)
class JobApis:
    """The services behind `WorkflowService`, one per kind of call."""

    submission: SubmissionService
    reader: JobReader
    cancels: CancelService
    claims: ClaimService


class WorkflowServicer(workflow_pb2_grpc.WorkflowServiceServicer):
    def __init__(self, apis: JobApis) -> None:
        self._apis = apis

    async def SubmitJob(
        self, request: pb.SubmitJobRequest, context: Context
    ) -> pb.SubmitJobResponse:
        outcome = await self._apis.submission.submit(
            SubmitRequest(
                tenant_id=request.tenant_id,
                workflow_json=request.workflow_json,
                priority=priority_from_pb(request.priority),
                webhook_url=request.webhook_url
                if request.HasField("webhook_url")
                else None,
                metadata=dict(request.metadata),
                timeout_seconds=request.timeout_seconds,
                idempotency_key=request.idempotency_key
                if request.HasField("idempotency_key")
                else None,
            )
        )
        if outcome.job is None:
            return pb.SubmitJobResponse(
                validation_errors=validation_errors_to_pb(outcome.errors or {})
            )
        return pb.SubmitJobResponse(
            job=job_to_pb(outcome.job), replayed=outcome.replayed
        )

    async def ValidateWorkflow(
        self, request: pb.ValidateWorkflowRequest, context: Context
    ) -> pb.ValidateWorkflowResponse:
        errors = await self._apis.submission.validate_workflow(
            request.tenant_id, request.workflow_json
        )
        if errors is None:
            return pb.ValidateWorkflowResponse(valid=True)
        return pb.ValidateWorkflowResponse(
            valid=False, errors=validation_errors_to_pb(errors)
        )

    async def GetJob(self, request: pb.GetJobRequest, context: Context) -> pb.Job:
        job = await self._apis.reader.get(request.tenant_id, request.job_id)
        return job_to_pb(job)

    async def ListJobs(
        self, request: pb.ListJobsRequest, context: Context
    ) -> pb.ListJobsResponse:
        statuses = [status_filter(value) for value in request.statuses]
        known = [status for status in statuses if status is not None]
        if statuses and not known:
            return pb.ListJobsResponse()
        page = await self._apis.reader.list_jobs(
            request.tenant_id,
            page_size=request.page_size,
            cursor=request.cursor,
            statuses=known,
        )
        return pb.ListJobsResponse(
            jobs=[job_to_pb(job) for job in page.jobs],
            next_cursor=page.next_cursor or "",
        )

    async def CancelJob(self, request: pb.CancelJobRequest, context: Context) -> pb.Job:
        job = await self._apis.cancels.cancel(request.tenant_id, request.job_id)
        return job_to_pb(job)

    async def WatchJob(
        self, request: pb.WatchJobRequest, context: Context
    ) -> AsyncIterator[pb.JobUpdate]:
        async for update in self._apis.reader.watch(request.tenant_id, request.job_id):
            yield pb.JobUpdate(
                job=job_to_pb(update.job),
                kind=UPDATE_TO_PB[update.kind],
                new_outputs=[output_to_pb(output) for output in update.new_outputs],
            )

    async def ClaimJob(
        self, request: pb.ClaimJobRequest, context: Context
    ) -> pb.ClaimJobResponse:
        outcome = await self._apis.claims.claim(
            request.tenant_id, request.job_id, request.worker_id
        )
        response = pb.ClaimJobResponse(
            granted=outcome.granted,
            attempt=outcome.job.attempt if outcome.granted else 0,
            reason=outcome.reason.value if outcome.reason is not None else "",
            job=job_to_pb(outcome.job),
        )
        if outcome.assignment is not None:
            response.assignment.CopyFrom(assignment_to_pb(outcome.assignment))
        return response

    async def AcquireJob(
        self, request: pb.AcquireJobRequest, context: Context
    ) -> pb.AcquireJobResponse:
        assignment = await self._apis.claims.acquire(
            request.worker_id, request.pool, request.wait_seconds
        )
        if assignment is None:
            return pb.AcquireJobResponse()
        return pb.AcquireJobResponse(assignment=assignment_to_pb(assignment))

    async def RenewLeases(
        self, request: pb.RenewLeasesRequest, context: Context
    ) -> pb.RenewLeasesResponse:
        renewal = await self._apis.claims.renew(
            request.worker_id,
            [(lease.job_id, lease.attempt) for lease in request.leases],
        )
        return pb.RenewLeasesResponse(
            leases=[
                pb.LeaseStatus(
                    job_id=lease.job_id,
                    attempt=lease.attempt,
                    state=LEASE_TO_PB[lease.state],
                )
                for lease in renewal.leases
            ],
            lease_seconds=renewal.lease_seconds,
        )
