"""WorkflowService in memory."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncGenerator
from datetime import UTC, datetime, timedelta

import grpc

from comfyserve.contracts.pb.workflow.v1 import workflow_pb2 as wf

from .rpc import cursor_start, make_rpc_error, timestamp

_LISTABLE = {
    wf.JOB_STATUS_PENDING,
    wf.JOB_STATUS_RUNNING,
    wf.JOB_STATUS_COMPLETED,
    wf.JOB_STATUS_FAILED,
    wf.JOB_STATUS_CANCELLED,
    wf.JOB_STATUS_EXPIRED,
}


def _by_number(job: wf.Job) -> float:
    return float(job.number)


def _by_duration(job: wf.Job) -> float:
    # Jobs that never ran come last, as the service orders them.
    return job.duration_seconds if job.HasField("duration_seconds") else 1e18


def _by_longest(job: wf.Job) -> float:
    return -job.duration_seconds if job.HasField("duration_seconds") else 1e18


def _by_created(job: wf.Job) -> float:
    return job.created_at.ToDatetime().timestamp()


_ORDERS = {
    wf.JOB_ORDER_UNSPECIFIED: _by_created,
    wf.JOB_ORDER_SHORTEST_FIRST: _by_duration,
    wf.JOB_ORDER_LONGEST_FIRST: _by_longest,
}


def _listed(job: wf.Job, with_graph: bool) -> wf.Job:
    if with_graph:
        return job
    listed = wf.Job()
    listed.CopyFrom(job)
    listed.workflow_json = ""
    return listed


class FakeWorkflow:
    """WorkflowService in memory: tenants' jobs, idempotency, scripted watches."""

    def __init__(self) -> None:
        self.jobs: dict[str, wf.Job] = {}
        self.requests: list[object] = []
        self.idempotency: dict[tuple[str, str], tuple[bytes, str]] = {}
        self.validation_errors: wf.ValidationErrors | None = None
        self.fail_with: BaseException | None = None
        # Raised by the named method only, like one call's status.
        self.failures: dict[str, BaseException] = {}
        self.calls: list[str] = []
        self.watch_scripts: dict[str, list[wf.JobUpdate]] = {}
        # When set, a watch waits for it after its first update.
        self.watch_gate: asyncio.Event | None = None
        self.quotas: dict[str, wf.TenantQuota] = {}
        # GetNodeCatalog's document: ComfyUI's /object_info.
        self.object_info: dict[str, object] = {}
        self._number = 0
        self._clock = datetime(2030, 1, 1, tzinfo=UTC)

    def _record(self, method: str, request: object) -> None:
        self.requests.append(request)
        self.calls.append(method)
        if self.fail_with is not None:
            raise self.fail_with
        if method in self.failures:
            raise self.failures[method]

    def add_job(self, tenant_id: str, **fields: object) -> wf.Job:
        self._clock += timedelta(seconds=1)
        self._number += 1
        values: dict[str, object] = {
            "id": str(uuid.uuid4()),
            "number": self._number,
            "tenant_id": tenant_id,
            "status": wf.JOB_STATUS_PENDING,
            "priority": wf.PRIORITY_NORMAL,
            "created_at": timestamp(self._clock),
            "timeout_seconds": 600,
            **fields,
        }
        job = wf.Job(**values)  # type: ignore[arg-type]
        self.jobs[job.id] = job
        return job

    def _find(self, tenant_id: str, job_id: str) -> wf.Job:
        job = self.jobs.get(job_id)
        if job is None or job.tenant_id != tenant_id:
            raise make_rpc_error(grpc.StatusCode.NOT_FOUND, f"job {job_id} not found")
        return job

    async def submit_job(self, request: wf.SubmitJobRequest) -> wf.SubmitJobResponse:
        self._record("submit_job", request)
        if self.validation_errors is not None:
            return wf.SubmitJobResponse(validation_errors=self.validation_errors)
        body = request.SerializeToString(deterministic=True)
        if request.HasField("idempotency_key"):
            known = self.idempotency.get((request.tenant_id, request.idempotency_key))
            if known is not None:
                if known[0] != body:
                    raise make_rpc_error(grpc.StatusCode.ALREADY_EXISTS, "key reused")
                return wf.SubmitJobResponse(job=self.jobs[known[1]], replayed=True)
        if request.HasField("job_id") and request.job_id in self.jobs:
            raise make_rpc_error(
                grpc.StatusCode.ALREADY_EXISTS, "job_id_taken", reason="job_id_taken"
            )
        pending = sum(job.status == wf.JOB_STATUS_PENDING for job in self.jobs.values())
        job = self.add_job(
            request.tenant_id,
            priority=request.priority,
            metadata=dict(request.metadata),
            queue_position=pending,
            workflow_json=request.workflow_json,
            client_id=request.client_id,
        )
        if request.HasField("job_id"):
            del self.jobs[job.id]
            job.id = request.job_id
            self.jobs[job.id] = job
        job.timeout_seconds = request.timeout_seconds
        if request.HasField("webhook_url"):
            job.webhook_url = request.webhook_url
        if request.HasField("idempotency_key"):
            self.idempotency[(request.tenant_id, request.idempotency_key)] = (
                body,
                job.id,
            )
        return wf.SubmitJobResponse(job=job)

    async def validate_workflow(
        self, request: wf.ValidateWorkflowRequest
    ) -> wf.ValidateWorkflowResponse:
        self._record("validate_workflow", request)
        if self.validation_errors is not None:
            return wf.ValidateWorkflowResponse(
                valid=False, errors=self.validation_errors
            )
        return wf.ValidateWorkflowResponse(valid=True)

    async def get_job(self, request: wf.GetJobRequest) -> wf.Job:
        self._record("get_job", request)
        return self._find(request.tenant_id, request.job_id)

    async def list_jobs(self, request: wf.ListJobsRequest) -> wf.ListJobsResponse:
        self._record("list_jobs", request)
        # As the service: every status a job can have is a filter, and nothing else.
        unknown = [value for value in request.statuses if value not in _LISTABLE]
        if unknown:
            raise make_rpc_error(
                grpc.StatusCode.INVALID_ARGUMENT,
                "statuses is invalid",
                violations={"statuses": f"unknown value {unknown[0]}"},
            )
        jobs = sorted(
            (
                job
                for job in self.jobs.values()
                if job.tenant_id == request.tenant_id
                and (not request.statuses or job.status in request.statuses)
            ),
            key=_ORDERS.get(request.order, _by_number),
            reverse=request.order
            in (wf.JOB_ORDER_UNSPECIFIED, wf.JOB_ORDER_NEWEST_FIRST),
        )
        start = request.offset or cursor_start(request.cursor)
        size = request.page_size or 20
        page = [_listed(job, request.with_graph) for job in jobs[start : start + size]]
        more = start + size < len(jobs) and request.order == wf.JOB_ORDER_UNSPECIFIED
        return wf.ListJobsResponse(
            jobs=page,
            next_cursor=str(start + size) if more else "",
            total=len(jobs) if request.with_total else 0,
        )

    async def get_node_catalog(
        self, request: wf.GetNodeCatalogRequest
    ) -> wf.GetNodeCatalogResponse:
        self._record("get_node_catalog", request)
        document = self.object_info
        if request.class_type:
            known = document.get(request.class_type)
            document = {} if known is None else {request.class_type: known}
        return wf.GetNodeCatalogResponse(object_info_json=json.dumps(document))

    async def cancel_job(self, request: wf.CancelJobRequest) -> wf.Job:
        self._record("cancel_job", request)
        job = self._find(request.tenant_id, request.job_id)
        if job.status == wf.JOB_STATUS_PENDING:
            job.status = wf.JOB_STATUS_CANCELLED
            job.ClearField("queue_position")
        elif job.status == wf.JOB_STATUS_RUNNING:
            job.cancel_requested = True
        return job

    async def watch_job(
        self, request: wf.WatchJobRequest
    ) -> AsyncGenerator[wf.JobUpdate, None]:
        self._record("watch_job", request)
        job = self._find(request.tenant_id, request.job_id)
        script = self.watch_scripts.get(job.id)
        if script is None:
            script = [wf.JobUpdate(job=job, kind=wf.UPDATE_KIND_STATUS)]
        for position, update in enumerate(script):
            if position == 1 and self.watch_gate is not None:
                await self.watch_gate.wait()
            yield update

    async def get_usage(self, request: wf.GetUsageRequest) -> wf.GetUsageResponse:
        self._record("get_usage", request)
        usage: dict[str, wf.TenantUsage] = {}
        for job in self.jobs.values():
            if request.tenant_ids and job.tenant_id not in request.tenant_ids:
                continue
            entry = usage.setdefault(
                job.tenant_id, wf.TenantUsage(tenant_id=job.tenant_id)
            )
            name = wf.JobStatus.Name(job.status).removeprefix("JOB_STATUS_").lower()
            entry.jobs_by_status[name] += 1
            entry.gpu_seconds += 1.5
        return wf.GetUsageResponse(tenants=list(usage.values()))

    async def get_tenant_quota(
        self, request: wf.GetTenantQuotaRequest
    ) -> wf.TenantQuota:
        self._record("get_tenant_quota", request)
        return self.quotas.get(
            request.tenant_id,
            wf.TenantQuota(
                tenant_id=request.tenant_id,
                max_running=2,
                max_queued=100,
                running_is_default=True,
                queued_is_default=True,
            ),
        )

    async def set_tenant_quota(
        self, request: wf.SetTenantQuotaRequest
    ) -> wf.TenantQuota:
        self._record("set_tenant_quota", request)
        quota = wf.TenantQuota(
            tenant_id=request.tenant_id,
            max_running=request.max_running if request.HasField("max_running") else 2,
            max_queued=request.max_queued if request.HasField("max_queued") else 100,
            running_is_default=not request.HasField("max_running"),
            queued_is_default=not request.HasField("max_queued"),
        )
        self.quotas[request.tenant_id] = quota
        return quota
