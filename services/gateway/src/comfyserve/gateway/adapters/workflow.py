"""WorkflowService client.

Errors travel as `grpc.aio.AioRpcError`, exactly as the service answered them;
the gateway maps them to HTTP in one handler.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Protocol

import grpc

from comfyserve.contracts.pb.workflow.v1 import workflow_pb2 as wf
from comfyserve.contracts.pb.workflow.v1 import workflow_pb2_grpc as wf_grpc

# The gRPC name of the service, as its health service reports it.
WORKFLOW_SERVICE: str = wf.DESCRIPTOR.services_by_name["WorkflowService"].full_name


class WorkflowClient(Protocol):
    async def submit_job(
        self, request: wf.SubmitJobRequest
    ) -> wf.SubmitJobResponse: ...

    async def validate_workflow(
        self, request: wf.ValidateWorkflowRequest
    ) -> wf.ValidateWorkflowResponse: ...

    async def get_job(self, request: wf.GetJobRequest) -> wf.Job: ...

    async def list_jobs(self, request: wf.ListJobsRequest) -> wf.ListJobsResponse: ...

    async def cancel_job(self, request: wf.CancelJobRequest) -> wf.Job: ...

    def watch_job(
        self, request: wf.WatchJobRequest
    ) -> AsyncGenerator[wf.JobUpdate, None]:
        """The job's updates; closing the generator ends the call."""
        ...

    async def get_usage(self, request: wf.GetUsageRequest) -> wf.GetUsageResponse: ...

    async def get_tenant_quota(
        self, request: wf.GetTenantQuotaRequest
    ) -> wf.TenantQuota: ...

    async def set_tenant_quota(
        self, request: wf.SetTenantQuotaRequest
    ) -> wf.TenantQuota: ...

    async def get_node_catalog(
        self, request: wf.GetNodeCatalogRequest
    ) -> wf.GetNodeCatalogResponse: ...


class GrpcWorkflowClient:
    def __init__(self, channel: grpc.aio.Channel, timeout_seconds: float) -> None:
        self._stub = wf_grpc.WorkflowServiceStub(channel)
        self._timeout = timeout_seconds

    async def submit_job(self, request: wf.SubmitJobRequest) -> wf.SubmitJobResponse:
        return await self._stub.SubmitJob(request, timeout=self._timeout)

    async def validate_workflow(
        self, request: wf.ValidateWorkflowRequest
    ) -> wf.ValidateWorkflowResponse:
        return await self._stub.ValidateWorkflow(request, timeout=self._timeout)

    async def get_job(self, request: wf.GetJobRequest) -> wf.Job:
        return await self._stub.GetJob(request, timeout=self._timeout)

    async def list_jobs(self, request: wf.ListJobsRequest) -> wf.ListJobsResponse:
        return await self._stub.ListJobs(request, timeout=self._timeout)

    async def cancel_job(self, request: wf.CancelJobRequest) -> wf.Job:
        return await self._stub.CancelJob(request, timeout=self._timeout)

    async def get_usage(self, request: wf.GetUsageRequest) -> wf.GetUsageResponse:
        return await self._stub.GetUsage(request, timeout=self._timeout)

    async def get_tenant_quota(
        self, request: wf.GetTenantQuotaRequest
    ) -> wf.TenantQuota:
        return await self._stub.GetTenantQuota(request, timeout=self._timeout)

    async def set_tenant_quota(
        self, request: wf.SetTenantQuotaRequest
    ) -> wf.TenantQuota:
        return await self._stub.SetTenantQuota(request, timeout=self._timeout)

    async def get_node_catalog(
        self, request: wf.GetNodeCatalogRequest
    ) -> wf.GetNodeCatalogResponse:
        return await self._stub.GetNodeCatalog(request, timeout=self._timeout)

    async def watch_job(
        self, request: wf.WatchJobRequest
    ) -> AsyncGenerator[wf.JobUpdate, None]:
        # No deadline: a watch lasts as long as the job and its viewer.
        call = self._stub.WatchJob(request)
        try:
            async for update in call:
                yield update
        finally:
            call.cancel()
