"""Translation between the REST job models and WorkflowService messages.

Requests go out as the service reads them (ids, priority, status filter, the
graph as compact JSON); jobs come back as REST models (status, progress,
errors, outputs), and a refused graph as ComfyUI's error shape.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Sequence
from typing import Any

from comfyserve.contracts.pb.storage.v1 import storage_pb2 as st
from comfyserve.contracts.pb.workflow.v1 import workflow_pb2 as wf
from comfyserve.gateway.errors import InvalidWorkflowError, NotFoundError
from comfyserve.gateway.jobs.models import (
    Job,
    JobError,
    JobLinks,
    JobStatus,
    JobSummary,
    Output,
    OutputKind,
    Priority,
    Progress,
)
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
FINAL_STATUSES = frozenset(
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


def parse_job_id(job_id: str) -> str:
    """The canonical form of a job id; 404 for anything that is not a UUID."""
    try:
        return str(uuid.UUID(job_id))
    except ValueError:
        raise NotFoundError("No such workflow execution") from None


def compact_json(workflow: dict[str, Any]) -> str:
    """The graph as it travels to the workflow service.

    Unescaped UTF-8 keeps it no larger than the body it came in, so a body within
    the gateway's limit always fits the message it rides in.
    """
    return json.dumps(workflow, separators=(",", ":"), ensure_ascii=False)


def priority_to_pb(priority: Priority) -> wf.Priority.ValueType:
    return _PRIORITY_TO_PB[priority]


def statuses_to_pb(statuses: Sequence[JobStatus]) -> list[wf.JobStatus.ValueType]:
    # Each meaningful value once: `failed` is also EXPIRED.
    return sorted({code for status in statuses for code in _STATUS_TO_PB[status]})


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


def job_status(job: wf.Job) -> JobStatus:
    return _STATUS_FROM_PB.get(job.status, JobStatus.PENDING)


def queue_position(job: wf.Job) -> int | None:
    return optional_int(job, "queue_position")


def job_progress(job: wf.Job) -> Progress | None:
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


def job_error(job: wf.Job) -> JobError | None:
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


def output(file: wf.OutputFile, url: st.DownloadUrl | None) -> Output:
    return Output(
        file_id=file.file_id,
        node_id=file.node_id,
        filename=file.filename,
        content_type=file.content_type,
        size=file.size,
        width=optional_int(file, "width"),
        height=optional_int(file, "height"),
        kind=_KIND_FROM_PB.get(file.kind),
        url=url.url if url is not None else None,
        url_expires_at=optional_time(url, "expires_at") if url is not None else None,
    )


def unique_outputs(outputs: Iterable[wf.OutputFile]) -> list[wf.OutputFile]:
    seen: dict[str, wf.OutputFile] = {}
    for output in outputs:
        seen.setdefault(output.file_id, output)
    return list(seen.values())


def summary(job: wf.Job, links: JobLinks) -> JobSummary:
    return JobSummary(
        execution_id=job.id,
        status=job_status(job),
        priority=_PRIORITY_FROM_PB.get(job.priority, Priority.NORMAL),
        created_at=optional_time(job, "created_at"),
        started_at=optional_time(job, "started_at"),
        completed_at=optional_time(job, "completed_at"),
        duration_seconds=(
            job.duration_seconds if job.HasField("duration_seconds") else None
        ),
        queue_position=queue_position(job),
        attempt=job.attempt,
        cancel_requested=job.cancel_requested,
        error=job_error(job),
        metadata=dict(job.metadata),
        links=links,
    )


def detail(job: wf.Job, links: JobLinks, outputs: list[Output]) -> Job:
    """The whole job: its summary, progress, settings and `outputs` (with URLs)."""
    return Job(
        **dict(summary(job, links)),
        progress=job_progress(job),
        outputs=outputs,
        webhook_url=job.webhook_url if job.HasField("webhook_url") else None,
        # Round up so a limit set in seconds is never shown shorter.
        timeout_minutes=round(job.timeout_seconds / 60, 2),
        trace_id=job.trace_id or None,
    )
