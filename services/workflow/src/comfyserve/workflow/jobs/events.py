"""The events the workflow service publishes about a job."""

from __future__ import annotations

from typing import Any

from comfyserve.contracts.events import (
    FinalStatus,
    JobCancelRequested,
    JobCancelRequestedData,
    JobFinished,
    JobFinishedData,
    JobSubmitted,
    JobSubmittedData,
)
from comfyserve.contracts.workflow_format import replace_asset_refs
from comfyserve.workflow.jobs.models import JobRecord


def resolved_workflow(job: JobRecord) -> dict[str, Any]:
    """The job's graph with asset references replaced by the staged filenames."""
    names = {item["file_id"]: item["filename"] for item in job.inputs}
    return replace_asset_refs(job.workflow, names)


def submitted(job: JobRecord, source: str) -> JobSubmitted:
    """`submitted` for the job's next attempt (claims count attempts)."""
    return JobSubmitted(
        source=source,
        subject=str(job.id),
        tenant_id=job.tenant_id,
        data=JobSubmittedData(
            pool=job.pool,
            priority=job.priority,
            attempt=job.attempt + 1,
            timeout_seconds=job.timeout_seconds,
            deadline=job.deadline,
        ),
    )


def finished(job: JobRecord, source: str) -> JobFinished:
    """`finished` for a job that has just reached its final status."""
    return JobFinished(
        source=source,
        subject=str(job.id),
        tenant_id=job.tenant_id,
        data=JobFinishedData(
            status=FinalStatus(job.status.value),
            attempt=job.attempt,
            output_file_ids=[output["file_id"] for output in job.outputs],
            error_code=None if job.error is None else job.error.get("code"),
            webhook_url=job.webhook_url,
        ),
    )


def cancel_requested(job: JobRecord, source: str, reason: str) -> JobCancelRequested:
    return JobCancelRequested(
        source=source,
        subject=str(job.id),
        tenant_id=job.tenant_id,
        data=JobCancelRequestedData(reason=reason),
    )
