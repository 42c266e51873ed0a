"""The job a payload shows: read at attempt time, so its download URLs are
fresh, from the workflow and storage services."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Protocol

import grpc
from google.protobuf.message import Message

from comfyserve.contracts.limits import DOWNLOAD_URLS_PER_CALL
from comfyserve.contracts.pb.storage.v1 import storage_pb2 as st
from comfyserve.contracts.pb.storage.v1 import storage_pb2_grpc as st_grpc
from comfyserve.contracts.pb.workflow.v1 import workflow_pb2 as wf
from comfyserve.contracts.pb.workflow.v1 import workflow_pb2_grpc as wf_grpc
from comfyserve.contracts.webhooks import (
    WebhookJob,
    WebhookJobError,
    WebhookJobLinks,
    WebhookOutput,
    WebhookProgress,
)

CALL_TIMEOUT_SECONDS = 10.0

_STATUS = {
    wf.JOB_STATUS_PENDING: "pending",
    wf.JOB_STATUS_RUNNING: "running",
    wf.JOB_STATUS_COMPLETED: "completed",
    wf.JOB_STATUS_FAILED: "failed",
    wf.JOB_STATUS_CANCELLED: "cancelled",
    # Shown as REST shows it: failed, with the error code `expired`.
    wf.JOB_STATUS_EXPIRED: "failed",
}
_PRIORITY = {
    wf.PRIORITY_HIGH: "high",
    wf.PRIORITY_NORMAL: "normal",
    wf.PRIORITY_LOW: "low",
}
_KIND = {
    wf.OUTPUT_KIND_IMAGE: "image",
    wf.OUTPUT_KIND_VIDEO: "video",
    wf.OUTPUT_KIND_AUDIO: "audio",
    wf.OUTPUT_KIND_TEXT: "text",
    wf.OUTPUT_KIND_FILE: "file",
    wf.OUTPUT_KIND_LATENT: "latent",
}


class JobGone(Exception):
    """The job does not exist (any more) for its tenant."""


class JobUnavailable(Exception):
    """The job cannot be read now; the attempt waits and tries again."""


class JobSource(Protocol):
    async def job(self, tenant_id: str, job_id: str) -> WebhookJob: ...


def _time(message: Message, field: str) -> datetime | None:
    if not message.HasField(field):
        return None
    value: datetime = getattr(message, field).ToDatetime(tzinfo=UTC)
    return value


def _int(message: Message, field: str) -> int | None:
    if not message.HasField(field):
        return None
    value: int = getattr(message, field)
    return value


def _progress(job: wf.Job) -> WebhookProgress | None:
    if not job.HasField("progress"):
        return None
    p = job.progress
    return WebhookProgress(
        node_id=p.node_id or None,
        class_type=p.class_type or None,
        step=_int(p, "step"),
        max=_int(p, "max"),
        fraction=p.fraction,
        nodes_done=p.nodes_done,
        nodes_total=p.nodes_total,
    )


def _error(job: wf.Job) -> WebhookJobError | None:
    if job.HasField("error"):
        e = job.error
        return WebhookJobError(
            code=e.code,
            message=e.message,
            node_id=e.node_id or None,
            class_type=e.class_type or None,
        )
    if job.status == wf.JOB_STATUS_EXPIRED:
        return WebhookJobError(
            code="expired", message="The job expired", node_id=None, class_type=None
        )
    return None


def _output(file: wf.OutputFile, url: st.DownloadUrl | None) -> WebhookOutput:
    return WebhookOutput(
        file_id=file.file_id,
        node_id=file.node_id,
        filename=file.filename,
        content_type=file.content_type,
        size=file.size,
        width=_int(file, "width"),
        height=_int(file, "height"),
        kind=_KIND.get(file.kind),
        url=None if url is None else url.url,
        url_expires_at=None if url is None else _time(url, "expires_at"),
    )


def render_job(
    job: wf.Job, urls: dict[str, st.DownloadUrl], base_url: str
) -> WebhookJob:
    """The job as the gateway's `GET /workflows/{id}` renders it."""
    link = f"{base_url.rstrip('/')}/workflows/{job.id}"
    # The service may list an output twice (new, and on the job); REST shows it once.
    outputs: dict[str, wf.OutputFile] = {}
    for output in job.outputs:
        outputs.setdefault(output.file_id, output)
    return WebhookJob(
        execution_id=job.id,
        status=_STATUS.get(job.status, "pending"),
        priority=_PRIORITY.get(job.priority, "normal"),
        created_at=_time(job, "created_at"),
        started_at=_time(job, "started_at"),
        completed_at=_time(job, "completed_at"),
        duration_seconds=(
            job.duration_seconds if job.HasField("duration_seconds") else None
        ),
        queue_position=_int(job, "queue_position"),
        attempt=job.attempt,
        cancel_requested=job.cancel_requested,
        error=_error(job),
        metadata=dict(job.metadata),
        links=WebhookJobLinks(
            self=link, events=f"{link}/events", cancel=f"{link}/cancel"
        ),
        progress=_progress(job),
        outputs=[_output(o, urls.get(o.file_id)) for o in outputs.values()],
        webhook_url=job.webhook_url if job.HasField("webhook_url") else None,
        timeout_minutes=round(job.timeout_seconds / 60, 2),
    )


class GrpcJobSource:
    def __init__(
        self, workflow: grpc.aio.Channel, storage: grpc.aio.Channel, base_url: str
    ) -> None:
        self._workflow = wf_grpc.WorkflowServiceStub(workflow)
        self._storage = st_grpc.StorageServiceStub(storage)
        self._base_url = base_url

    async def job(self, tenant_id: str, job_id: str) -> WebhookJob:
        try:
            job = await self._workflow.GetJob(
                wf.GetJobRequest(tenant_id=tenant_id, job_id=job_id),
                timeout=CALL_TIMEOUT_SECONDS,
            )
        except grpc.aio.AioRpcError as error:
            if error.code() == grpc.StatusCode.NOT_FOUND:
                raise JobGone(job_id) from error
            raise JobUnavailable(f"GetJob: {error.code().name}") from error
        ids = list(dict.fromkeys(o.file_id for o in job.outputs))
        chunks = [
            ids[start : start + DOWNLOAD_URLS_PER_CALL]
            for start in range(0, len(ids), DOWNLOAD_URLS_PER_CALL)
        ]
        found = await asyncio.gather(*(self._urls(tenant_id, c) for c in chunks))
        urls = {url.file_id: url for chunk in found for url in chunk}
        return render_job(job, urls, self._base_url)

    async def _urls(self, tenant_id: str, file_ids: list[str]) -> list[st.DownloadUrl]:
        try:
            response = await self._storage.GetDownloadUrls(
                st.GetDownloadUrlsRequest(tenant_id=tenant_id, file_ids=file_ids),
                timeout=CALL_TIMEOUT_SECONDS,
            )
        except grpc.aio.AioRpcError as error:
            # A file removed by retention still shows, without a URL.
            if error.code() == grpc.StatusCode.NOT_FOUND:
                return []
            raise JobUnavailable(f"GetDownloadUrls: {error.code().name}") from error
        return list(response.urls)
