"""Translation between the REST job routes and WorkflowService.

No decision about a job is taken here: the workflow service owns them all.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Iterable, Sequence
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any

import grpc
from pydantic import BaseModel

from comfyserve.contracts.limits import DOWNLOAD_URLS_PER_CALL
from comfyserve.contracts.pb.storage.v1 import storage_pb2 as st
from comfyserve.contracts.pb.workflow.v1 import workflow_pb2 as wf
from comfyserve.gateway.adapters.storage import StorageClient
from comfyserve.gateway.adapters.workflow import WorkflowClient
from comfyserve.gateway.errors import InvalidWorkflowError, NotFoundError
from comfyserve.gateway.jobs.models import (
    ExecuteRequest,
    Job,
    JobAccepted,
    JobError,
    JobLinks,
    JobPage,
    JobStatus,
    JobSummary,
    Output,
    OutputKind,
    Priority,
    Progress,
    ProgressEvent,
    StatusEvent,
)
from comfyserve.gateway.links import Links
from comfyserve.gateway.protos import optional_int, optional_time

WORKFLOW_FORMAT_UI = "workflow_format_ui"

_PRIORITY_TO_PB = {
    Priority.HIGH: wf.PRIORITY_HIGH,
    Priority.NORMAL: wf.PRIORITY_NORMAL,
    Priority.LOW: wf.PRIORITY_LOW,
}
_PRIORITY_FROM_PB = {value: key for key, value in _PRIORITY_TO_PB.items()}
_STATUS_FROM_PB = {
    wf.JOB_STATUS_PENDING: JobStatus.PENDING,
    wf.JOB_STATUS_RUNNING: JobStatus.RUNNING,
    wf.JOB_STATUS_COMPLETED: JobStatus.COMPLETED,
    wf.JOB_STATUS_FAILED: JobStatus.FAILED,
    wf.JOB_STATUS_CANCELLED: JobStatus.CANCELLED,
    # The REST API has no `expired`: the error code says why the job ended.
    wf.JOB_STATUS_EXPIRED: JobStatus.FAILED,
}
_STATUS_TO_PB = {
    JobStatus.PENDING: (wf.JOB_STATUS_PENDING,),
    JobStatus.RUNNING: (wf.JOB_STATUS_RUNNING,),
    JobStatus.COMPLETED: (wf.JOB_STATUS_COMPLETED,),
    JobStatus.FAILED: (wf.JOB_STATUS_FAILED, wf.JOB_STATUS_EXPIRED),
    JobStatus.CANCELLED: (wf.JOB_STATUS_CANCELLED,),
}
_FINAL = frozenset(
    {
        wf.JOB_STATUS_COMPLETED,
        wf.JOB_STATUS_FAILED,
        wf.JOB_STATUS_CANCELLED,
        wf.JOB_STATUS_EXPIRED,
    }
)
_KIND_FROM_PB = {
    wf.OUTPUT_KIND_IMAGE: OutputKind.IMAGE,
    wf.OUTPUT_KIND_VIDEO: OutputKind.VIDEO,
    wf.OUTPUT_KIND_AUDIO: OutputKind.AUDIO,
    wf.OUTPUT_KIND_TEXT: OutputKind.TEXT,
    wf.OUTPUT_KIND_FILE: OutputKind.FILE,
    wf.OUTPUT_KIND_LATENT: OutputKind.LATENT,
}


@dataclass(frozen=True, slots=True)
class Submitted:
    job: JobAccepted
    replayed: bool


@dataclass(frozen=True, slots=True)
class JobEvent:
    """One server-sent event: its name and its JSON body."""

    name: str
    data: BaseModel


def parse_job_id(job_id: str) -> str:
    """The canonical form of a job id; 404 for anything that is not a UUID."""
    try:
        return str(uuid.UUID(job_id))
    except ValueError:
        raise NotFoundError("No such workflow execution") from None


def _compact_json(workflow: dict[str, Any]) -> str:
    """The graph as it travels to the workflow service.

    Unescaped UTF-8 keeps it no larger than the body it came in, so a body within
    the gateway's limit always fits the message it rides in.
    """
    return json.dumps(workflow, separators=(",", ":"), ensure_ascii=False)


def _extra_info(text: str) -> dict[str, Any]:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _error_item(item: wf.ErrorItem) -> dict[str, Any]:
    return {
        "type": item.type,
        "message": item.message,
        "details": item.details,
        "extra_info": _extra_info(item.extra_info_json),
    }


def invalid_workflow(errors: wf.ValidationErrors) -> InvalidWorkflowError:
    """ComfyUI's /prompt error shape, with `extra_info` as objects again."""
    top = errors.error
    node_errors = {
        node_id: {
            "errors": [_error_item(item) for item in node.errors],
            "dependent_outputs": list(node.dependent_outputs),
            "class_type": node.class_type,
        }
        for node_id, node in errors.node_errors.items()
    }
    code = WORKFLOW_FORMAT_UI if top.type == WORKFLOW_FORMAT_UI else "invalid_workflow"
    return InvalidWorkflowError(
        top.message or "The workflow is not valid",
        code=code,
        extra={"error_type": top.type, "node_errors": node_errors},
    )


def _status(job: wf.Job) -> JobStatus:
    return _STATUS_FROM_PB.get(job.status, JobStatus.PENDING)


def _queue_position(job: wf.Job) -> int | None:
    return optional_int(job, "queue_position")


def _progress(job: wf.Job) -> Progress | None:
    if not job.HasField("progress"):
        return None
    progress = job.progress
    return Progress(
        node_id=progress.node_id or None,
        class_type=progress.class_type or None,
        step=optional_int(progress, "step"),
        max=optional_int(progress, "max"),
        fraction=progress.fraction,
        nodes_done=progress.nodes_done,
        nodes_total=progress.nodes_total,
    )


def _error(job: wf.Job) -> JobError | None:
    if job.HasField("error"):
        return JobError(
            code=job.error.code,
            message=job.error.message,
            node_id=job.error.node_id or None,
            class_type=job.error.class_type or None,
        )
    if job.status == wf.JOB_STATUS_EXPIRED:
        return JobError(
            code="expired", message="The job expired", node_id=None, class_type=None
        )
    return None


def _output(output: wf.OutputFile, url: st.DownloadUrl | None) -> Output:
    return Output(
        file_id=output.file_id,
        node_id=output.node_id,
        filename=output.filename,
        content_type=output.content_type,
        size=output.size,
        width=optional_int(output, "width"),
        height=optional_int(output, "height"),
        kind=_KIND_FROM_PB.get(output.kind),
        url=url.url if url is not None else None,
        url_expires_at=optional_time(url, "expires_at") if url is not None else None,
    )


def _unique_outputs(outputs: Iterable[wf.OutputFile]) -> list[wf.OutputFile]:
    seen: dict[str, wf.OutputFile] = {}
    for output in outputs:
        seen.setdefault(output.file_id, output)
    return list(seen.values())


class JobsService:
    def __init__(
        self,
        workflow: WorkflowClient,
        storage: StorageClient,
        tenant_id: str,
        links: Links,
    ) -> None:
        self._workflow = workflow
        self._storage = storage
        self._tenant_id = tenant_id
        self._links = links

    def _job_links(self, job_id: str) -> JobLinks:
        url = self._links.job(job_id)
        return JobLinks(self=url, events=f"{url}/events", cancel=f"{url}/cancel")

    async def submit(
        self, request: ExecuteRequest, idempotency_key: str | None
    ) -> Submitted:
        message = wf.SubmitJobRequest(
            tenant_id=self._tenant_id,
            workflow_json=_compact_json(request.workflow),
            priority=_PRIORITY_TO_PB[request.priority],
            metadata=request.metadata,
            timeout_seconds=round(request.timeout_minutes * 60),
        )
        if request.webhook_url is not None:
            message.webhook_url = str(request.webhook_url)
        if idempotency_key is not None:
            message.idempotency_key = idempotency_key
        response = await self._workflow.submit_job(message)
        if response.WhichOneof("result") == "validation_errors":
            raise invalid_workflow(response.validation_errors)
        job = response.job
        return Submitted(
            job=JobAccepted(
                execution_id=job.id,
                status=_status(job),
                created_at=optional_time(job, "created_at"),
                queue_position=_queue_position(job),
                links=self._job_links(job.id),
            ),
            replayed=response.replayed,
        )

    async def validate(self, workflow: dict[str, Any]) -> None:
        response = await self._workflow.validate_workflow(
            wf.ValidateWorkflowRequest(
                tenant_id=self._tenant_id, workflow_json=_compact_json(workflow)
            )
        )
        if not response.valid:
            raise invalid_workflow(response.errors)

    async def get(self, job_id: str) -> Job:
        job = await self._workflow.get_job(
            wf.GetJobRequest(tenant_id=self._tenant_id, job_id=parse_job_id(job_id))
        )
        return await self._job(job)

    async def cancel(self, job_id: str) -> Job:
        job = await self._workflow.cancel_job(
            wf.CancelJobRequest(tenant_id=self._tenant_id, job_id=parse_job_id(job_id))
        )
        return await self._job(job)

    async def page(
        self, statuses: Sequence[JobStatus], limit: int, cursor: str | None
    ) -> JobPage:
        response = await self._workflow.list_jobs(
            wf.ListJobsRequest(
                tenant_id=self._tenant_id,
                page_size=limit,
                cursor=cursor or "",
                # Each meaningful value once: `failed` is also EXPIRED.
                statuses=sorted(
                    {code for status in statuses for code in _STATUS_TO_PB[status]}
                ),
            )
        )
        return JobPage(
            items=[self._summary(job) for job in response.jobs],
            next_cursor=response.next_cursor or None,
        )

    async def watch(self, job_id: str) -> AsyncIterator[JobEvent]:
        """The job's events; raises (404 and the like) before the first one."""
        updates = self._workflow.watch_job(
            wf.WatchJobRequest(tenant_id=self._tenant_id, job_id=parse_job_id(job_id))
        )
        try:
            first = await anext(updates)
        except StopAsyncIteration:
            raise NotFoundError("No such workflow execution") from None
        except BaseException:
            await updates.aclose()
            raise
        return self._events(first, updates)

    async def _events(
        self, first: wf.JobUpdate, updates: AsyncGenerator[wf.JobUpdate, None]
    ) -> AsyncIterator[JobEvent]:
        sent_outputs: set[str] = set()
        last_status: tuple[JobStatus, int | None] | None = None
        async with aclosing(updates):
            update: wf.JobUpdate | None = first
            while update is not None:
                job = update.job
                final = job.status in _FINAL
                status = (_status(job), _queue_position(job))
                status_event = JobEvent(
                    "status",
                    StatusEvent(
                        status=status[0], queue_position=status[1], error=_error(job)
                    ),
                )
                if not final and status != last_status:
                    yield status_event
                    last_status = status
                # Every output goes out before the final status, including any
                # the service only lists on the job itself.
                fresh = [
                    output
                    for output in _unique_outputs([*update.new_outputs, *job.outputs])
                    if output.file_id not in sent_outputs
                ]
                for output in await self._outputs(fresh):
                    sent_outputs.add(output.file_id)
                    yield JobEvent("output", output)
                if final:
                    yield status_event
                    return
                progress = _progress(job)
                if update.kind == wf.UPDATE_KIND_PROGRESS and progress is not None:
                    yield JobEvent("progress", ProgressEvent(progress=progress))
                update = await anext(updates, None)

    async def _download_urls(self, file_ids: list[str]) -> dict[str, st.DownloadUrl]:
        """Presigned URLs of the files, in as few calls as storage allows."""
        chunks = [
            file_ids[start : start + DOWNLOAD_URLS_PER_CALL]
            for start in range(0, len(file_ids), DOWNLOAD_URLS_PER_CALL)
        ]
        found = await asyncio.gather(*(self._download_url_chunk(c) for c in chunks))
        return {url.file_id: url for urls in found for url in urls}

    async def _download_url_chunk(
        self, file_ids: list[str]
    ) -> Sequence[st.DownloadUrl]:
        try:
            response = await self._storage.get_download_urls(
                st.GetDownloadUrlsRequest(tenant_id=self._tenant_id, file_ids=file_ids)
            )
        except grpc.aio.AioRpcError as error:
            # A file removed by retention still shows in the job, without a URL.
            if error.code() == grpc.StatusCode.NOT_FOUND:
                return []
            raise
        return response.urls

    async def _outputs(self, outputs: list[wf.OutputFile]) -> list[Output]:
        urls = await self._download_urls([output.file_id for output in outputs])
        return [_output(output, urls.get(output.file_id)) for output in outputs]

    def _summary(self, job: wf.Job) -> JobSummary:
        return JobSummary(
            execution_id=job.id,
            status=_status(job),
            priority=_PRIORITY_FROM_PB.get(job.priority, Priority.NORMAL),
            created_at=optional_time(job, "created_at"),
            started_at=optional_time(job, "started_at"),
            completed_at=optional_time(job, "completed_at"),
            duration_seconds=(
                job.duration_seconds if job.HasField("duration_seconds") else None
            ),
            queue_position=_queue_position(job),
            attempt=job.attempt,
            cancel_requested=job.cancel_requested,
            error=_error(job),
            metadata=dict(job.metadata),
            links=self._job_links(job.id),
        )

    async def _job(self, job: wf.Job) -> Job:
        summary = self._summary(job)
        return Job(
            **dict(summary),
            progress=_progress(job),
            outputs=await self._outputs(_unique_outputs(job.outputs)),
            webhook_url=job.webhook_url if job.HasField("webhook_url") else None,
            # Round up so a limit set in seconds is never shown shorter.
            timeout_minutes=round(job.timeout_seconds / 60, 2),
        )
