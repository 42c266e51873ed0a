"""The job routes' calls to WorkflowService, and output URLs from StorageService.

No decision about a job is taken here: the workflow service owns them all.
Messages are translated both ways by `translate`; a job's event stream is
`events`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Collection, Sequence
from dataclasses import dataclass
from typing import Any

import grpc

from comfyserve.contracts.limits import DOWNLOAD_URLS_PER_CALL
from comfyserve.contracts.pb.storage.v1 import storage_pb2 as st
from comfyserve.contracts.pb.workflow.v1 import workflow_pb2 as wf
from comfyserve.gateway.adapters.storage import StorageClient
from comfyserve.gateway.adapters.workflow import WorkflowClient
from comfyserve.gateway.errors import NotFoundError
from comfyserve.gateway.jobs import translate
from comfyserve.gateway.jobs.events import (
    REST,
    JobEvent,
    Rendering,
    RenderOutputs,
    RenderPreview,
    job_events,
)
from comfyserve.gateway.jobs.models import (
    ExecuteRequest,
    Job,
    JobAccepted,
    JobLinks,
    JobPage,
    JobStatus,
    Output,
)
from comfyserve.gateway.links import Links
from comfyserve.gateway.protos import optional_time


@dataclass(frozen=True, slots=True)
class Submitted:
    job: JobAccepted
    replayed: bool


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
            workflow_json=translate.compact_json(request.workflow),
            priority=translate.priority_to_pb(request.priority),
            metadata=request.metadata,
            timeout_seconds=round(request.timeout_minutes * 60),
        )
        if request.webhook_url is not None:
            message.webhook_url = str(request.webhook_url)
        if idempotency_key is not None:
            message.idempotency_key = idempotency_key
        response = await self._workflow.submit_job(message)
        if response.WhichOneof("result") == "validation_errors":
            raise translate.invalid_workflow(response.validation_errors)
        job = response.job
        return Submitted(
            job=JobAccepted(
                execution_id=job.id,
                status=translate.job_status(job),
                created_at=optional_time(job, "created_at"),
                queue_position=translate.queue_position(job),
                links=self._job_links(job.id),
            ),
            replayed=response.replayed,
        )

    async def validate(self, workflow: dict[str, Any]) -> None:
        response = await self._workflow.validate_workflow(
            wf.ValidateWorkflowRequest(
                tenant_id=self._tenant_id,
                workflow_json=translate.compact_json(workflow),
            )
        )
        if not response.valid:
            raise translate.invalid_workflow(response.errors)

    async def get(self, job_id: str) -> Job:
        job = await self._workflow.get_job(
            wf.GetJobRequest(
                tenant_id=self._tenant_id, job_id=translate.parse_job_id(job_id)
            )
        )
        return await self._job(job)

    async def cancel(self, job_id: str) -> Job:
        job = await self._workflow.cancel_job(
            wf.CancelJobRequest(
                tenant_id=self._tenant_id, job_id=translate.parse_job_id(job_id)
            )
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
                statuses=translate.statuses_to_pb(statuses),
            )
        )
        return JobPage(
            items=[
                translate.summary(job, self._job_links(job.id)) for job in response.jobs
            ],
            next_cursor=response.next_cursor or None,
        )

    async def watch(
        self,
        job_id: str,
        rendering: Rendering = REST,
        outputs: RenderOutputs | None = None,
        delivered: Collection[str] = (),
        preview: RenderPreview | None = None,
    ) -> AsyncIterator[JobEvent]:
        """The job's events; raises (404 and the like) before the first one.

        Another surface passes its own `rendering`, `outputs` and `preview`."""
        updates = self._workflow.watch_job(
            wf.WatchJobRequest(
                tenant_id=self._tenant_id, job_id=translate.parse_job_id(job_id)
            )
        )
        try:
            first = await anext(updates)
        except StopAsyncIteration:
            raise NotFoundError("No such workflow execution") from None
        except BaseException:
            await updates.aclose()
            raise
        return job_events(
            first, updates, outputs or self._job_outputs, rendering, delivered, preview
        )

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

    async def _job_outputs(
        self, job: wf.Job, outputs: list[wf.OutputFile]
    ) -> list[Output]:
        return await self._outputs(outputs)

    async def _outputs(self, outputs: list[wf.OutputFile]) -> list[Output]:
        urls = await self._download_urls([output.file_id for output in outputs])
        return [
            translate.output(output, urls.get(output.file_id)) for output in outputs
        ]

    async def _job(self, job: wf.Job) -> Job:
        outputs = await self._outputs(translate.unique_outputs(job.outputs))
        return translate.detail(job, self._job_links(job.id), outputs)
