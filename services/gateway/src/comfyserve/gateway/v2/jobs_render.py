"""WorkflowService jobs as Comfy API v2 bodies (API.md §A.4, §A.5).

`expires_at` is the job's retention deadline: its creation plus
`GATEWAY_V2_RETENTION_HOURS` (by default the storage service's output
lifetime, 7 days), so it never moves and repeated reads of an ended job are
identical. An output's `url` is our own content route, which needs no
signature, so it stays valid until that same deadline.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from comfyserve.contracts.pb.workflow.v1 import workflow_pb2 as wf
from comfyserve.gateway.jobs import translate
from comfyserve.gateway.links import Links
from comfyserve.gateway.protos import optional_int, optional_time
from comfyserve.gateway.v2.models import (
    Job,
    JobError,
    JobListItem,
    JobStatus,
    JobUrls,
    Output,
    OutputType,
    Progress,
    StatusFrame,
)

_STATUS = {
    wf.JOB_STATUS_PENDING: JobStatus.QUEUED,
    wf.JOB_STATUS_RUNNING: JobStatus.RUNNING,
    wf.JOB_STATUS_COMPLETED: JobStatus.SUCCEEDED,
    wf.JOB_STATUS_FAILED: JobStatus.FAILED,
    wf.JOB_STATUS_CANCELLED: JobStatus.CANCELED,
    wf.JOB_STATUS_EXPIRED: JobStatus.EXPIRED,
}
# A status filter of `GET /api/v2/jobs`, as the workflow service lists them.
STATUS_FILTER: dict[str, wf.JobStatus.ValueType] = {
    JobStatus.QUEUED: wf.JOB_STATUS_PENDING,
    JobStatus.RUNNING: wf.JOB_STATUS_RUNNING,
    JobStatus.CANCELING: wf.JOB_STATUS_RUNNING,
    JobStatus.SUCCEEDED: wf.JOB_STATUS_COMPLETED,
    JobStatus.FAILED: wf.JOB_STATUS_FAILED,
    JobStatus.CANCELED: wf.JOB_STATUS_CANCELLED,
    JobStatus.EXPIRED: wf.JOB_STATUS_EXPIRED,
}
_TYPE = {
    wf.OUTPUT_KIND_IMAGE: OutputType.IMAGE,
    wf.OUTPUT_KIND_VIDEO: OutputType.VIDEO,
    wf.OUTPUT_KIND_AUDIO: OutputType.AUDIO,
    wf.OUTPUT_KIND_TEXT: OutputType.TEXT,
    wf.OUTPUT_KIND_FILE: OutputType.FILE,
    wf.OUTPUT_KIND_LATENT: OutputType.LATENT,
}


def status(job: wf.Job) -> JobStatus:
    if job.status == wf.JOB_STATUS_RUNNING and job.cancel_requested:
        return JobStatus.CANCELING
    return _STATUS.get(job.status, JobStatus.QUEUED)


@dataclass(frozen=True, slots=True)
class JobRenderer:
    """Renders one tenant's jobs with absolute links under `links`."""

    links: Links
    retention: timedelta

    def job_url(self, job_id: str) -> str:
        return self.links.url(f"/api/v2/jobs/{job_id}")

    def urls(self, job_id: str) -> JobUrls:
        url = self.job_url(job_id)
        return JobUrls(self=url, events=f"{url}/events", cancel=f"{url}/cancel")

    def expires_at(self, job: wf.Job) -> datetime:
        return _created_at(job) + self.retention

    def output(self, job: wf.Job, file: wf.OutputFile) -> Output:
        return Output(
            node_id=file.node_id,
            name=file.filename,
            type=_TYPE.get(file.kind, OutputType.FILE),
            content_type=file.content_type or "application/octet-stream",
            size_bytes=file.size,
            id=file.file_id,
            # Outputs are hashed with SHA-256 by the executor; the contract's
            # hash is BLAKE3, so it is unknown here rather than wrong.
            hash=None,
            url=self.links.url(f"/api/v2/assets/{file.file_id}/content"),
            url_expires_at=self.expires_at(job),
            job_id=job.id,
        )

    def job(self, job: wf.Job) -> Job:
        current = status(job)
        created = _created_at(job)
        started = optional_time(job, "started_at")
        completed = optional_time(job, "completed_at")
        if current in (JobStatus.RUNNING, JobStatus.CANCELING):
            started = started or created
        if job.status in translate.FINAL_STATUSES:
            completed = completed or started or created
        return Job(
            id=job.id,
            status=current,
            created_at=created,
            started_at=started,
            completed_at=completed,
            expires_at=self.expires_at(job),
            queue_position=(
                translate.queue_position(job) if current == JobStatus.QUEUED else None
            ),
            progress=progress(job),
            outputs=[
                self.output(job, file) for file in translate.unique_outputs(job.outputs)
            ],
            error=error(job),
            urls=self.urls(job.id),
            metadata=dict(job.metadata),
        )


def _created_at(job: wf.Job) -> datetime:
    return optional_time(job, "created_at") or datetime.now(UTC)


def progress(job: wf.Job) -> Progress | None:
    """The latest snapshot while the job runs; null otherwise."""
    if job.status != wf.JOB_STATUS_RUNNING or not job.HasField("progress"):
        return None
    snapshot = job.progress
    step, steps = optional_int(snapshot, "step"), optional_int(snapshot, "max")
    message = None
    if snapshot.class_type and step is not None and steps is not None:
        message = f"{snapshot.class_type} {step}/{steps}"
    return Progress(
        value=min(max(snapshot.fraction, 0.0), 1.0),
        nodes_done=snapshot.nodes_done,
        nodes_total=snapshot.nodes_total,
        current_node=snapshot.node_id or None,
        current_node_class=snapshot.class_type or None,
        step=step,
        steps=steps,
        message=message,
    )


def error(job: wf.Job) -> JobError | None:
    if job.status == wf.JOB_STATUS_FAILED and not job.HasField("error"):
        return JobError(code="job_failed", message="The job failed")
    if not job.HasField("error") and job.status != wf.JOB_STATUS_EXPIRED:
        return None
    found = translate.job_error(job)
    if found is None:
        return None
    return JobError(
        code=found.code,
        message=found.message,
        node_id=found.node_id,
        class_type=found.class_type,
        traceback=job.error.traceback or None,
    )


def status_frame(job: wf.Job) -> StatusFrame:
    current = status(job)
    return StatusFrame(
        status=current,
        queue_position=(
            translate.queue_position(job) if current == JobStatus.QUEUED else None
        ),
    )


def list_item(job: wf.Job) -> JobListItem:
    created = _created_at(job)
    updated = (
        optional_time(job, "completed_at")
        or optional_time(job, "started_at")
        or created
    )
    return JobListItem(
        id=job.id,
        status=status(job),
        create_time=created,
        update_time=updated,
        metadata=dict(job.metadata),
    )
