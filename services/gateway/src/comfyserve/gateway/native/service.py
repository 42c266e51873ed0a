"""The native API's job operations for one tenant, over the workflow service.
No transport types: refusals are `NativeRefusal`s carrying ComfyUI's answer."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc

from comfyserve.contracts.pb.workflow.v1 import workflow_pb2 as wf
from comfyserve.gateway.adapters.workflow import WorkflowClient
from comfyserve.gateway.jobs.translate import compact_json, invalid_workflow
from comfyserve.gateway.native.routing import PromptRouter
from comfyserve.gateway.native.shapes import queue_item
from comfyserve.runtime.grpc import rpc_details

PENDING, RUNNING = wf.JOB_STATUS_PENDING, wf.JOB_STATUS_RUNNING
ACTIVE = [PENDING, RUNNING]
ENDED = [
    wf.JOB_STATUS_COMPLETED,
    wf.JOB_STATUS_FAILED,
    wf.JOB_STATUS_EXPIRED,
    wf.JOB_STATUS_CANCELLED,
]
# The most jobs one listing reads; the workflow service caps pages there too.
PAGE = 100
_JOB_ID_TAKEN = "job_id_taken"
# Refusals of the whole prompt, which G3 answers with `node_errors: {}`.
_WHOLE_PROMPT_ERRORS = frozenset({"missing_node_type", "invalid_prompt"})


class NativeRefusal(Exception):
    """A request ComfyUI would refuse, with its status and JSON body."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(status)
        self.status = status
        self.body = body


def prompt_error(kind: str, message: str, details: str = "") -> NativeRefusal:
    """A 400 in the shape of ComfyUI's `/prompt` refusals (§B.2)."""
    error = {"type": kind, "message": message, "details": details, "extra_info": {}}
    return NativeRefusal(400, {"error": error, "node_errors": {}})


def canonical_id(value: str) -> str | None:
    """The id when it is a canonical lowercase UUID, else None."""
    try:
        parsed = str(uuid.UUID(value))
    except ValueError:
        return None
    return parsed if parsed == value else None


@dataclass(frozen=True, slots=True)
class PromptRequest:
    """The parts of a `POST /prompt` body this product uses. Of `extra_data`
    only the partner key is kept, for ComfyUI and never stored (ADR 0006);
    the rest (`extra_pnginfo`, `preview_method`) means nothing to our
    executors."""

    prompt: Any
    client_id: str
    prompt_id: str | None
    front: bool
    partner_key: str | None = field(default=None, repr=False)


def _native_errors(errors: wf.ValidationErrors) -> dict[str, Any]:
    top = errors.error
    extra = json.loads(top.extra_info_json) if top.extra_info_json else {}
    error = {
        "type": top.type,
        "message": top.message,
        "details": top.details,
        "extra_info": extra,
    }
    # ComfyUI names the node of a whole-prompt refusal in `extra_info` and
    # lists no node errors for it.
    whole = top.type in _WHOLE_PROMPT_ERRORS
    node_errors = {} if whole else invalid_workflow(errors).extra["node_errors"]
    return {"error": error, "node_errors": node_errors}


class NativeJobs:
    def __init__(
        self, workflow: WorkflowClient, router: PromptRouter, tenant_id: str
    ) -> None:
        self._workflow = workflow
        self._router = router
        self._tenant = tenant_id

    async def submit(self, request: PromptRequest) -> dict[str, Any]:
        submit = wf.SubmitJobRequest(
            tenant_id=self._tenant,
            workflow_json=compact_json(request.prompt),
            priority=wf.PRIORITY_HIGH if request.front else wf.PRIORITY_NORMAL,
            client_id=request.client_id,
            partner_key=request.partner_key,
        )
        if request.prompt_id is not None:
            submit.job_id = request.prompt_id
        try:
            answer = await self._workflow.submit_job(submit)
        except grpc.aio.AioRpcError as error:
            if rpc_details(error).reason == _JOB_ID_TAKEN:
                raise NativeRefusal(
                    409, {"error": "prompt_id already exists"}
                ) from None
            raise
        if answer.WhichOneof("result") != "job":
            raise NativeRefusal(400, _native_errors(answer.validation_errors))
        job = answer.job
        await self._router.announce(self._tenant, request.client_id, job.id)
        return {"prompt_id": job.id, "number": job.number, "node_errors": {}}

    async def listing(
        self,
        statuses: Sequence[wf.JobStatus.ValueType],
        *,
        order: wf.JobOrder.ValueType = wf.JOB_ORDER_OLDEST_FIRST,
        offset: int = 0,
        limit: int = PAGE,
        with_graph: bool = True,
    ) -> wf.ListJobsResponse:
        return await self._workflow.list_jobs(
            wf.ListJobsRequest(
                tenant_id=self._tenant,
                statuses=statuses,
                order=order,
                offset=offset,
                page_size=min(limit, PAGE),
                with_graph=with_graph,
                with_total=True,
            )
        )

    async def queue_remaining(self) -> int:
        page = await self.listing(ACTIVE, limit=1, with_graph=False)
        return page.total

    async def queue(self) -> dict[str, list[list[Any]]]:
        jobs = (await self.listing(ACTIVE)).jobs
        ordered = sorted(jobs, key=lambda job: job.number)
        return {
            "queue_running": [
                queue_item(job) for job in ordered if job.status == RUNNING
            ],
            "queue_pending": [
                queue_item(job) for job in ordered if job.status == PENDING
            ],
        }

    async def find(self, job_id: str) -> wf.Job | None:
        """The caller's job, or None for an id that names none of its jobs."""
        if canonical_id(job_id) is None:
            return None
        try:
            return await self._workflow.get_job(
                wf.GetJobRequest(tenant_id=self._tenant, job_id=job_id)
            )
        except grpc.aio.AioRpcError as error:
            if error.code() == grpc.StatusCode.NOT_FOUND:
                return None
            raise

    async def cancel_if(
        self, job_ids: Sequence[str], statuses: Sequence[wf.JobStatus.ValueType]
    ) -> list[str]:
        """Cancels those of the caller's jobs that have one of `statuses` now;
        answers their ids."""
        cancelled = []
        for job_id in job_ids:
            job = await self.find(job_id)
            if job is None or job.status not in statuses:
                continue
            await self._workflow.cancel_job(
                wf.CancelJobRequest(tenant_id=self._tenant, job_id=job.id)
            )
            cancelled.append(job.id)
        if cancelled:
            await self._router.queue_changed(self._tenant)
        return cancelled

    async def history(self, max_items: int | None, offset: int | None) -> list[wf.Job]:
        """Ended jobs oldest first, as ComfyUI's history: `offset` counts from
        the oldest; `max_items` alone is the newest that many."""
        limit = PAGE if max_items is None else max_items
        if offset is not None:
            page = await self.listing(ENDED, offset=offset, limit=limit)
            return list(page.jobs)
        page = await self.listing(ENDED, order=wf.JOB_ORDER_NEWEST_FIRST, limit=limit)
        return list(reversed(page.jobs))

    async def ids_with(self, status: wf.JobStatus.ValueType) -> list[str]:
        page = await self.listing([status], with_graph=False)
        return [job.id for job in page.jobs]

    async def node_catalog(self, class_type: str = "") -> dict[str, Any]:
        answer = await self._workflow.get_node_catalog(
            wf.GetNodeCatalogRequest(tenant_id=self._tenant, class_type=class_type)
        )
        document: dict[str, Any] = json.loads(answer.object_info_json or "{}")
        return document
