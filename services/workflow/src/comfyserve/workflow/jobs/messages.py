"""Conversions between the service's records and WorkflowService messages."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from comfyserve.contracts.events import OutputKind, Priority
from comfyserve.contracts.pb.workflow.v1 import workflow_pb2 as pb
from comfyserve.workflow.errors import InvalidArgumentError
from comfyserve.workflow.jobs.claims import Assignment, LeaseState
from comfyserve.workflow.jobs.models import JobOrder, JobRecord, JobStatus
from comfyserve.workflow.jobs.reads import UpdateKind
from comfyserve.workflow.validation import ComfyErrors

_PRIORITY_FROM_PB: Mapping[int, Priority] = {
    pb.PRIORITY_UNSPECIFIED: Priority.NORMAL,
    pb.PRIORITY_HIGH: Priority.HIGH,
    pb.PRIORITY_NORMAL: Priority.NORMAL,
    pb.PRIORITY_LOW: Priority.LOW,
}
_PRIORITY_TO_PB = {
    Priority.HIGH: pb.PRIORITY_HIGH,
    Priority.NORMAL: pb.PRIORITY_NORMAL,
    Priority.LOW: pb.PRIORITY_LOW,
}
_STATUS_TO_PB = {
    JobStatus.PENDING: pb.JOB_STATUS_PENDING,
    JobStatus.RUNNING: pb.JOB_STATUS_RUNNING,
    JobStatus.COMPLETED: pb.JOB_STATUS_COMPLETED,
    JobStatus.FAILED: pb.JOB_STATUS_FAILED,
    JobStatus.CANCELLED: pb.JOB_STATUS_CANCELLED,
}
_STATUS_FROM_PB: Mapping[int, JobStatus] = {
    value: key for key, value in _STATUS_TO_PB.items()
}
_ORDER_FROM_PB: Mapping[int, JobOrder] = {
    pb.JOB_ORDER_UNSPECIFIED: JobOrder.NEWEST,
    pb.JOB_ORDER_OLDEST_FIRST: JobOrder.OLDEST_FIRST,
    pb.JOB_ORDER_NEWEST_FIRST: JobOrder.NEWEST_FIRST,
    pb.JOB_ORDER_LONGEST_FIRST: JobOrder.LONGEST_FIRST,
    pb.JOB_ORDER_SHORTEST_FIRST: JobOrder.SHORTEST_FIRST,
}
# This service never gives a job JOB_STATUS_EXPIRED (a job past its deadline
# is FAILED with code "timeout"), so filtering on it matches nothing.
_NEVER_REPORTED = frozenset({pb.JOB_STATUS_EXPIRED})
LEASE_TO_PB = {
    LeaseState.HELD: pb.LEASE_STATE_HELD,
    LeaseState.CANCEL_REQUESTED: pb.LEASE_STATE_CANCEL_REQUESTED,
    LeaseState.LOST: pb.LEASE_STATE_LOST,
    LeaseState.ENDED: pb.LEASE_STATE_ENDED,
}
_KIND_TO_PB = {
    OutputKind.IMAGE: pb.OUTPUT_KIND_IMAGE,
    OutputKind.VIDEO: pb.OUTPUT_KIND_VIDEO,
    OutputKind.AUDIO: pb.OUTPUT_KIND_AUDIO,
    OutputKind.TEXT: pb.OUTPUT_KIND_TEXT,
    OutputKind.FILE: pb.OUTPUT_KIND_FILE,
    OutputKind.LATENT: pb.OUTPUT_KIND_LATENT,
}
UPDATE_TO_PB = {
    UpdateKind.STATUS: pb.UPDATE_KIND_STATUS,
    UpdateKind.PROGRESS: pb.UPDATE_KIND_PROGRESS,
    UpdateKind.OUTPUT: pb.UPDATE_KIND_OUTPUT,
}


def priority_from_pb(value: int) -> Priority:
    try:
        return _PRIORITY_FROM_PB[value]
    except KeyError:
        raise InvalidArgumentError("priority", f"unknown value {value}") from None


def order_from_pb(value: int) -> JobOrder:
    try:
        return _ORDER_FROM_PB[value]
    except KeyError:
        raise InvalidArgumentError("order", f"unknown value {value}") from None


def status_filter(value: int) -> JobStatus | None:
    """The status a filter value selects; None for one no job ever has."""
    if value in _NEVER_REPORTED:
        return None
    try:
        return _STATUS_FROM_PB[value]
    except KeyError:
        raise InvalidArgumentError("statuses", f"unknown value {value}") from None


def _timestamp(value: datetime | None) -> Timestamp | None:
    if value is None:
        return None
    stamp = Timestamp()
    stamp.FromDatetime(value)
    return stamp


def job_to_pb(job: JobRecord) -> pb.Job:
    """A job read without its graph (listings, watches) has an empty
    `workflow_json`."""
    message = pb.Job(
        id=str(job.id),
        tenant_id=job.tenant_id,
        status=_STATUS_TO_PB[job.status],
        priority=_PRIORITY_TO_PB[job.priority],
        created_at=_timestamp(job.created_at),
        started_at=_timestamp(job.started_at),
        completed_at=_timestamp(job.completed_at),
        deadline=_timestamp(job.deadline),
        queue_position=job.queue_position,
        attempt=job.attempt,
        outputs=[output_to_pb(output) for output in job.outputs],
        metadata=job.metadata,
        webhook_url=job.webhook_url,
        timeout_seconds=job.timeout_seconds,
        duration_seconds=job.duration_seconds,
        cancel_requested=job.cancel_requested,
        workflow_json=(_compact(job.workflow) if job.workflow else ""),
        worker_id=job.worker_id or "",
        pool=job.pool,
        client_id=job.client_id or "",
        number=job.number or 0,
        trace_id=job.trace_id or "",
    )
    if job.progress is not None:
        message.progress.CopyFrom(_progress_to_pb(job.progress))
    if job.error is not None:
        message.error.CopyFrom(
            pb.JobError(
                code=job.error["code"],
                message=job.error.get("message") or "",
                node_id=job.error.get("node_id") or "",
                class_type=job.error.get("class_type") or "",
                traceback=job.error.get("traceback") or "",
            )
        )
    return message


def _progress_to_pb(progress: Mapping[str, Any]) -> pb.Progress:
    return pb.Progress(
        node_id=progress.get("node_id") or "",
        class_type=progress.get("class_type") or "",
        step=progress.get("step"),
        max=progress.get("max"),
        fraction=progress.get("fraction") or 0.0,
        nodes_done=progress.get("nodes_done") or 0,
        nodes_total=progress.get("nodes_total") or 0,
        preview_file_id=progress.get("preview_file_id") or "",
    )


def _compact(graph: Mapping[str, Any]) -> str:
    # UTF-8 as it came: escaping non-ASCII text would grow the message up to
    # sixfold past the size the graph was accepted at.
    return json.dumps(graph, separators=(",", ":"), ensure_ascii=False)


def assignment_to_pb(assignment: Assignment) -> pb.Assignment:
    job = assignment.job
    return pb.Assignment(
        job=job_to_pb(job),
        attempt=assignment.attempt,
        workflow_json=_compact(assignment.graph),
        inputs=[
            pb.InputFile(
                file_id=item["file_id"],
                node_id=item["node_id"],
                input_name=item["input_name"],
                filename=item["filename"],
                bucket=item["bucket"],
                key=item["key"],
                content_type=item["content_type"],
                size=item["size"],
                sha256=item.get("sha256") or "",
            )
            for item in job.inputs
        ],
        file_inputs=[
            pb.InputRef(node_id=ref["node_id"], input_name=ref["input_name"])
            for ref in job.file_inputs
        ],
        lease_seconds=assignment.lease_seconds,
        partner_key=assignment.partner_key,
        traceparent=job.traceparent or "",
    )


def output_to_pb(output: Mapping[str, Any]) -> pb.OutputFile:
    return pb.OutputFile(
        file_id=output["file_id"],
        node_id=output["node_id"],
        index=output["index"],
        filename=output["filename"],
        kind=_KIND_TO_PB.get(OutputKind(output["kind"]), pb.OUTPUT_KIND_UNSPECIFIED),
        content_type=output["content_type"],
        size=output["size"],
        width=output.get("width"),
        height=output.get("height"),
        sha256=output.get("sha256") or "",
    )


def _error_item_to_pb(item: Mapping[str, Any]) -> pb.ErrorItem:
    extra = item.get("extra_info") or {}
    return pb.ErrorItem(
        type=str(item.get("type", "")),
        message=str(item.get("message", "")),
        details=str(item.get("details", "")),
        extra_info_json=json.dumps(extra, separators=(",", ":"), default=str)
        if extra
        else "",
    )


def validation_errors_to_pb(errors: ComfyErrors) -> pb.ValidationErrors:
    message = pb.ValidationErrors()
    if errors.get("error"):
        message.error.CopyFrom(_error_item_to_pb(errors["error"]))
    for node_id, entry in (errors.get("node_errors") or {}).items():
        message.node_errors[node_id].CopyFrom(
            pb.NodeError(
                errors=[_error_item_to_pb(item) for item in entry.get("errors", [])],
                dependent_outputs=[str(o) for o in entry.get("dependent_outputs", [])],
                class_type=str(entry.get("class_type", "")),
            )
        )
    return message
