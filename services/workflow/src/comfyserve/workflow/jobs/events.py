"""The events the workflow service publishes about a job."""

from __future__ import annotations

from typing import Any

from comfyserve.contracts.events import (
    InputFile,
    JobCancelRequested,
    JobCancelRequestedData,
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
            workflow=resolved_workflow(job),
            inputs=[InputFile.model_validate(item) for item in job.inputs],
            priority=job.priority,
            attempt=job.attempt + 1,
            timeout_seconds=job.timeout_seconds,
            deadline=job.deadline,
            webhook_url=job.webhook_url,
            metadata=job.metadata,
        ),
    )


def cancel_requested(job: JobRecord, source: str, reason: str) -> JobCancelRequested:
    return JobCancelRequested(
        source=source,
        subject=str(job.id),
        tenant_id=job.tenant_id,
        data=JobCancelRequestedData(reason=reason),
    )
