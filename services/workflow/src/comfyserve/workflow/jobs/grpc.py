"""`WorkflowService` over gRPC: decode, call one service, encode. Errors are
answered by the runtime's interceptor, each as its class in `errors.py` says."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import grpc

from comfyserve.contracts.pb.workflow.v1 import workflow_pb2 as pb
from comfyserve.contracts.pb.workflow.v1 import workflow_pb2_grpc
from comfyserve.contracts.scopes import Scope
from comfyserve.runtime.grpc_auth import (
    caller,
    require_admin,
    require_service,
    tenant_of_call,
)
from comfyserve.workflow.jobs.cancellation import CancelService
from comfyserve.workflow.jobs.claims import ClaimService
from comfyserve.workflow.jobs.messages import (
    LEASE_TO_PB,
    UPDATE_TO_PB,
    assignment_to_pb,
    job_to_pb,
    order_from_pb,
    output_to_pb,
    priority_from_pb,
    status_filter,
    validation_errors_to_pb,
)
from comfyserve.workflow.jobs.reads import JobReader
from comfyserve.workflow.jobs.submission import SubmissionService, SubmitRequest
from comfyserve.workflow.tenants.models import QuotaLimits, TenantQuota
from comfyserve.workflow.tenants.service import TenantService

Context = grpc.aio.ServicerContext[Any, Any]


@dataclass(frozen=True, slots=True)
class JobApis:
    """The services behind `WorkflowService`, one per kind of call."""

    submission: SubmissionService
    reader: JobReader
    cancels: CancelService
    claims: ClaimService
    tenants: TenantService


class WorkflowServicer(workflow_pb2_grpc.WorkflowServiceServicer):
    def __init__(self, apis: JobApis) -> None:
        self._apis = apis

    async def SubmitJob(
        self, request: pb.SubmitJobRequest, context: Context
    ) -> pb.SubmitJobResponse:
        outcome = await self._apis.submission.submit(
            SubmitRequest(
                tenant_id=tenant_of_call(request.tenant_id, Scope.WORKFLOWS_WRITE),
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
                job_id=request.job_id if request.HasField("job_id") else None,
                client_id=request.client_id or None,
                partner_key=request.partner_key or None,
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
            tenant_of_call(request.tenant_id, Scope.WORKFLOWS_WRITE),
            request.workflow_json,
        )
        if errors is None:
            return pb.ValidateWorkflowResponse(valid=True)
        return pb.ValidateWorkflowResponse(
            valid=False, errors=validation_errors_to_pb(errors)
        )

    async def GetJob(self, request: pb.GetJobRequest, context: Context) -> pb.Job:
        tenant_id = tenant_of_call(request.tenant_id, Scope.WORKFLOWS_READ)
        return job_to_pb(await self._apis.reader.get(tenant_id, request.job_id))

    async def ListJobs(
        self, request: pb.ListJobsRequest, context: Context
    ) -> pb.ListJobsResponse:
        statuses = [status_filter(value) for value in request.statuses]
        known = [status for status in statuses if status is not None]
        if statuses and not known:
            return pb.ListJobsResponse()
        page = await self._apis.reader.list_jobs(
            tenant_of_call(request.tenant_id, Scope.WORKFLOWS_READ),
            page_size=request.page_size,
            cursor=request.cursor,
            statuses=known,
            order=order_from_pb(request.order),
            offset=request.offset,
            with_graph=request.with_graph,
            with_total=request.with_total,
        )
        return pb.ListJobsResponse(
            jobs=[job_to_pb(job) for job in page.jobs],
            next_cursor=page.next_cursor or "",
            total=page.total or 0,
        )

    async def CancelJob(self, request: pb.CancelJobRequest, context: Context) -> pb.Job:
        tenant_id = tenant_of_call(request.tenant_id, Scope.WORKFLOWS_WRITE)
        job = await self._apis.cancels.cancel(tenant_id, request.job_id)
        return job_to_pb(job)

    async def WatchJob(
        self, request: pb.WatchJobRequest, context: Context
    ) -> AsyncIterator[pb.JobUpdate]:
        tenant_id = tenant_of_call(request.tenant_id, Scope.WORKFLOWS_READ)
        async for update in self._apis.reader.watch(tenant_id, request.job_id):
            yield pb.JobUpdate(
                job=job_to_pb(update.job),
                kind=UPDATE_TO_PB[update.kind],
                new_outputs=[output_to_pb(output) for output in update.new_outputs],
            )

    async def ClaimJob(
        self, request: pb.ClaimJobRequest, context: Context
    ) -> pb.ClaimJobResponse:
        require_service()
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
        require_service()
        assignment = await self._apis.claims.acquire(
            request.worker_id, request.pool, request.wait_seconds
        )
        if assignment is None:
            return pb.AcquireJobResponse()
        return pb.AcquireJobResponse(assignment=assignment_to_pb(assignment))

    async def RenewLeases(
        self, request: pb.RenewLeasesRequest, context: Context
    ) -> pb.RenewLeasesResponse:
        require_service()
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

    async def GetUsage(
        self, request: pb.GetUsageRequest, context: Context
    ) -> pb.GetUsageResponse:
        require_admin()
        found = await self._apis.tenants.usage(list(request.tenant_ids))
        return pb.GetUsageResponse(
            tenants=[
                pb.TenantUsage(
                    tenant_id=entry.tenant_id,
                    jobs_by_status=entry.jobs_by_status,
                    gpu_seconds=entry.gpu_seconds,
                )
                for entry in found
            ]
        )

    async def SetTenantQuota(
        self, request: pb.SetTenantQuotaRequest, context: Context
    ) -> pb.TenantQuota:
        require_admin()
        limits = QuotaLimits(
            max_running=request.max_running
            if request.HasField("max_running")
            else None,
            max_queued=request.max_queued if request.HasField("max_queued") else None,
        )
        return _quota_to_pb(
            await self._apis.tenants.set_quota(request.tenant_id, limits)
        )

    async def GetTenantQuota(
        self, request: pb.GetTenantQuotaRequest, context: Context
    ) -> pb.TenantQuota:
        # A tenant may read its own limits; an administrator anyone's.
        principal = caller()
        if principal is not None and Scope.ADMIN in principal.scopes:
            tenant_id = request.tenant_id
        else:
            tenant_id = tenant_of_call(request.tenant_id, Scope.WORKFLOWS_READ)
        return _quota_to_pb(await self._apis.tenants.quota(tenant_id))

    async def GetNodeCatalog(
        self, request: pb.GetNodeCatalogRequest, context: Context
    ) -> pb.GetNodeCatalogResponse:
        tenant_of_call(request.tenant_id, Scope.WORKFLOWS_READ)
        document = await self._apis.reader.object_info(request.class_type or None)
        return pb.GetNodeCatalogResponse(object_info_json=json.dumps(document))


def _quota_to_pb(quota: TenantQuota) -> pb.TenantQuota:
    return pb.TenantQuota(
        tenant_id=quota.tenant_id,
        max_running=quota.max_running,
        max_queued=quota.max_queued,
        running_is_default=quota.running_is_default,
        queued_is_default=quota.queued_is_default,
    )
