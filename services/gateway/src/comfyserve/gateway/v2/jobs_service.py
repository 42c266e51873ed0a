"""The v2 job routes' calls to WorkflowService and StorageService.

Like the REST routes (`jobs.service`), no decision about a job is taken here;
this adds what only v2 has: single-use idempotency claims, its error codes and
its shapes.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Collection, Sequence
from typing import Any

import grpc
import httpx
from pydantic import BaseModel

from comfyserve.contracts.pb.storage.v1 import storage_pb2 as st
from comfyserve.contracts.pb.workflow.v1 import workflow_pb2 as wf
from comfyserve.contracts.workflow_format import find_asset_refs, replace_asset_refs
from comfyserve.gateway.adapters.storage import StorageClient
from comfyserve.gateway.adapters.workflow import WorkflowClient
from comfyserve.gateway.errors import (
    InvalidWorkflowError,
    LimitsUnavailableError,
    NotFoundError,
)
from comfyserve.gateway.jobs import translate
from comfyserve.gateway.jobs.events import JobEvent, Rendering
from comfyserve.gateway.jobs.previews import fetch_preview
from comfyserve.gateway.jobs.service import JobsService
from comfyserve.gateway.limits.gcra import LimitsUnavailable
from comfyserve.gateway.v2 import jobs_render
from comfyserve.gateway.v2.errors import (
    IdempotencyKeyReuseError,
    InvalidCursorError,
    MissingAssetError,
)
from comfyserve.gateway.v2.idempotency import IdempotencyClaims
from comfyserve.gateway.v2.jobs_render import JobRenderer
from comfyserve.gateway.v2.jobs_request import SubmitBody
from comfyserve.gateway.v2.models import Job, JobPage, JobWorkflow, PreviewFrame

MISSING_ASSET = "missing_asset"
# Answers after which the workflow service certainly created no job, so the
# key goes back; any other (a timeout, a 5xx) may hide a created job.
_DEFINITE_REFUSALS = frozenset(
    {
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.ALREADY_EXISTS,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.OUT_OF_RANGE,
    }
)


def _missing_asset(errors: wf.ValidationErrors) -> MissingAssetError:
    """Every offending id: each asset error names its file in `extra_info`."""
    missing: list[str] = []
    for node in errors.node_errors.values():
        for item in node.errors:
            info = json.loads(item.extra_info_json) if item.extra_info_json else {}
            file_id = info.get("file_id") if isinstance(info, dict) else None
            if isinstance(file_id, str) and file_id not in missing:
                missing.append(file_id)
    return MissingAssetError(
        errors.error.message or "Referenced assets are not available", missing
    )


class V2JobsService:
    def __init__(
        self,
        jobs: JobsService,
        workflow: WorkflowClient,
        storage: StorageClient,
        http: httpx.AsyncClient,
        claims: IdempotencyClaims,
        tenant_id: str,
        renderer: JobRenderer,
    ) -> None:
        self._jobs = jobs
        self._workflow = workflow
        self._storage = storage
        self._http = http
        self._claims = claims
        self._tenant_id = tenant_id
        self.renderer = renderer

    async def submit(self, body: SubmitBody, idempotency_key: str | None) -> Job:
        if idempotency_key is not None:
            await self._claim(idempotency_key)
        try:
            job = await self._submit(body)
        except grpc.aio.AioRpcError as error:
            if idempotency_key is not None and error.code() in _DEFINITE_REFUSALS:
                await self._release(idempotency_key)
            raise
        except (MissingAssetError, InvalidWorkflowError):
            if idempotency_key is not None:
                await self._release(idempotency_key)
            raise
        return self.renderer.job(job)

    async def _submit(self, body: SubmitBody) -> wf.Job:
        response = await self._workflow.submit_job(
            wf.SubmitJobRequest(
                tenant_id=self._tenant_id,
                workflow_json=translate.compact_json(body.workflow),
                priority=wf.PRIORITY_NORMAL,
                metadata=body.metadata,
                # Kept only until the job ends, for ComfyUI (ADR 0006).
                partner_key=body.partner_key,
            )
        )
        if response.WhichOneof("result") == "validation_errors":
            errors = response.validation_errors
            if errors.error.type == MISSING_ASSET:
                raise _missing_asset(errors)
            raise translate.invalid_workflow(errors)
        return response.job

    async def _claim(self, key: str) -> None:
        try:
            claimed = await self._claims.claim(self._tenant_id, key)
        except LimitsUnavailable:
            raise LimitsUnavailableError() from None
        if not claimed:
            raise IdempotencyKeyReuseError()

    async def _release(self, key: str) -> None:
        try:
            await self._claims.release(self._tenant_id, key)
        except LimitsUnavailable:
            # Left claimed: the key expires with its TTL; the client's error
            # stands as the answer.
            return

    async def get_raw(self, job_id: str) -> wf.Job:
        return await self._workflow.get_job(
            wf.GetJobRequest(
                tenant_id=self._tenant_id, job_id=translate.parse_job_id(job_id)
            )
        )

    async def get(self, job_id: str) -> Job:
        return self.renderer.job(await self.get_raw(job_id))

    async def cancel(self, job_id: str) -> Job:
        job = await self._workflow.cancel_job(
            wf.CancelJobRequest(
                tenant_id=self._tenant_id, job_id=translate.parse_job_id(job_id)
            )
        )
        return self.renderer.job(job)

    async def page(
        self, statuses: Sequence[wf.JobStatus.ValueType], limit: int, cursor: str
    ) -> JobPage:
        try:
            response = await self._workflow.list_jobs(
                wf.ListJobsRequest(
                    tenant_id=self._tenant_id,
                    page_size=limit,
                    cursor=cursor,
                    statuses=sorted(set(statuses)),
                )
            )
        except grpc.aio.AioRpcError as error:
            # The request is otherwise valid, so a refusal is of the cursor.
            if cursor and error.code() == grpc.StatusCode.INVALID_ARGUMENT:
                raise InvalidCursorError() from None
            raise
        return JobPage(
            jobs=[jobs_render.list_item(job) for job in response.jobs],
            next_cursor=response.next_cursor or None,
        )

    async def workflow(self, job_id: str) -> JobWorkflow:
        """The graph as it ran: each asset reference replaced by its file's name."""
        job = await self.get_raw(job_id)
        if not job.workflow_json:
            raise NotFoundError("The job's workflow is no longer available")
        graph: dict[str, Any] = json.loads(job.workflow_json)
        names = {
            ref.file_id: await self._file_name(ref.file_id)
            for ref in find_asset_refs(graph)
        }
        return JobWorkflow(workflow=replace_asset_refs(graph, names), format="api")

    async def _file_name(self, file_id: str) -> str:
        try:
            info = await self._storage.get_file(
                st.GetFileRequest(tenant_id=self._tenant_id, file_id=file_id)
            )
        except grpc.aio.AioRpcError as error:
            # A file retention removed still leaves the graph readable.
            if error.code() == grpc.StatusCode.NOT_FOUND:
                return file_id
            raise
        return info.path or info.filename

    async def watch(
        self, job_id: str, rendering: Rendering, delivered: Collection[str]
    ) -> AsyncIterator[JobEvent]:
        return await self._jobs.watch(
            job_id, rendering, self._outputs, delivered, self._preview
        )

    async def _preview(self, job: wf.Job) -> PreviewFrame | None:
        found = await fetch_preview(
            self._storage, self._http, self._tenant_id, job.progress.preview_file_id
        )
        if found is None:
            return None
        return PreviewFrame(
            node_id=job.progress.node_id,
            content_type=found.content_type,
            data_base64=base64.b64encode(found.data).decode(),
        )

    async def _outputs(
        self, job: wf.Job, files: list[wf.OutputFile]
    ) -> Sequence[BaseModel]:
        return [self.renderer.output(job, file) for file in files]
