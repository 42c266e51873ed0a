"""`WorkflowService` over gRPC: decode, call `JobService`, encode. Errors are
mapped to status codes by `_map_errors`, which wraps every method."""

from __future__ import annotations

import functools
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NoReturn, TypeVar

import grpc
import structlog
from google.protobuf.any_pb2 import Any as Any_
from google.protobuf.timestamp_pb2 import Timestamp
from google.rpc import error_details_pb2, status_pb2  # type: ignore[import-untyped]

from comfyserve.contracts.events import OutputKind, Priority
from comfyserve.contracts.pb.workflow.v1 import workflow_pb2 as pb
from comfyserve.contracts.pb.workflow.v1 import workflow_pb2_grpc
from comfyserve.workflow.errors import ErrorStatus, InvalidArgumentError, WorkflowError
from comfyserve.workflow.jobs.cancellation import CancelService
from comfyserve.workflow.jobs.claims import (
    Assignment,
    ClaimService,
    LeaseState,
)
from comfyserve.workflow.jobs.models import JobRecord, JobStatus
from comfyserve.workflow.jobs.reads import JobReader, UpdateKind
from comfyserve.workflow.jobs.submission import (
    ComfyErrors,
    SubmissionService,
    SubmitRequest,
)

log = structlog.get_logger(__name__)

Context = grpc.aio.ServicerContext[Any, Any]
S = TypeVar("S")
Req = TypeVar("Req")
Resp = TypeVar("Resp")

_STATUS_DETAILS_KEY = "grpc-status-details-bin"

STATUS_CODES: Mapping[ErrorStatus, grpc.StatusCode] = {
    ErrorStatus.INVALID_ARGUMENT: grpc.StatusCode.INVALID_ARGUMENT,
    ErrorStatus.NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    ErrorStatus.ALREADY_EXISTS: grpc.StatusCode.ALREADY_EXISTS,
    ErrorStatus.UNAVAILABLE: grpc.StatusCode.UNAVAILABLE,
    ErrorStatus.INTERNAL: grpc.StatusCode.INTERNAL,
}

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
# This service never gives a job JOB_STATUS_EXPIRED (a job past its deadline
# is FAILED with code "timeout"), so filtering on it matches nothing.
_NEVER_REPORTED = frozenset({pb.JOB_STATUS_EXPIRED})
_LEASE_TO_PB = {
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
_UPDATE_TO_PB = {
    UpdateKind.STATUS: pb.UPDATE_KIND_STATUS,
    UpdateKind.PROGRESS: pb.UPDATE_KIND_PROGRESS,
    UpdateKind.OUTPUT: pb.UPDATE_KIND_OUTPUT,
}


async def _abort(context: Context, error: Exception) -> NoReturn:
    if isinstance(error, InvalidArgumentError):
        await context.abort(
            grpc.StatusCode.INVALID_ARGUMENT,
            error.message,
            trailing_metadata=_field_violation(error),
        )
    if isinstance(error, WorkflowError):
        await context.abort(STATUS_CODES[error.status], error.message)
    log.exception("workflow.grpc.internal_error")
    await context.abort(grpc.StatusCode.INTERNAL, "internal error")


def _field_violation(error: InvalidArgumentError) -> tuple[tuple[str, bytes]]:
    """`google.rpc.BadRequest` in the standard status-details trailer, so a
    caller can tell which field to fix."""
    detail = Any_()
    detail.Pack(
        error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(
                    field=error.field, description=error.problem
                )
            ]
        )
    )
    status = status_pb2.Status(
        code=grpc.StatusCode.INVALID_ARGUMENT.value[0],
        message=error.message,
        details=[detail],
    )
    return ((_STATUS_DETAILS_KEY, status.SerializeToString()),)


def _map_errors(
    method: Callable[[S, Req, Context], Awaitable[Resp]],
) -> Callable[[S, Req, Context], Awaitable[Resp]]:
    @functools.wraps(method)
    async def wrapper(self: S, request: Req, context: Context) -> Resp:
        try:
            return await method(self, request, context)
        except grpc.aio.AbortError:
            raise
        except Exception as error:
            await _abort(context, error)

    return wrapper


def _map_stream_errors(
    method: Callable[[S, Req, Context], AsyncIterator[Resp]],
) -> Callable[[S, Req, Context], AsyncIterator[Resp]]:
    @functools.wraps(method)
    async def wrapper(self: S, request: Req, context: Context) -> AsyncIterator[Resp]:
        try:
            async for item in method(self, request, context):
                yield item
        except grpc.aio.AbortError:
            raise
        except Exception as error:
            await _abort(context, error)

    return wrapper


@dataclass(frozen=True, slots=True)
class JobApis:
    """The services behind `WorkflowService`, one per kind of call."""

    submission: SubmissionService
    reader: JobReader
    cancels: CancelService
    claims: ClaimService


class WorkflowServicer(workflow_pb2_grpc.WorkflowServiceServicer):
    def __init__(self, apis: JobApis) -> None:
        self._apis = apis

    @_map_errors
    async def SubmitJob(
        self, request: pb.SubmitJobRequest, context: Context
    ) -> pb.SubmitJobResponse:
        outcome = await self._apis.submission.submit(
            SubmitRequest(
                tenant_id=request.tenant_id,
                workflow_json=request.workflow_json,
                priority=_priority(request.priority),
                webhook_url=request.webhook_url
                if request.HasField("webhook_url")
                else None,
                metadata=dict(request.metadata),
                timeout_seconds=request.timeout_seconds,
                idempotency_key=request.idempotency_key
                if request.HasField("idempotency_key")
                else None,
            )
        )
        if outcome.job is None:
            return pb.SubmitJobResponse(
                validation_errors=validation_errors_to_pb(outcome.errors or {})
            )
        return pb.SubmitJobResponse(
            job=job_to_pb(outcome.job), replayed=outcome.replayed
        )

    @_map_errors
    async def ValidateWorkflow(
        self, request: pb.ValidateWorkflowRequest, context: Context
    ) -> pb.ValidateWorkflowResponse:
        errors = await self._apis.submission.validate_workflow(
            request.tenant_id, request.workflow_json
        )
        if errors is None:
            return pb.ValidateWorkflowResponse(valid=True)
        return pb.ValidateWorkflowResponse(
            valid=False, errors=validation_errors_to_pb(errors)
        )

    @_map_errors
    async def GetJob(self, request: pb.GetJobRequest, context: Context) -> pb.Job:
        job = await self._apis.reader.get(request.tenant_id, request.job_id)
        return job_to_pb(job)

    @_map_errors
    async def ListJobs(
        self, request: pb.ListJobsRequest, context: Context
    ) -> pb.ListJobsResponse:
        statuses = [_status(value) for value in request.statuses]
        known = [status for status in statuses if status is not None]
        if statuses and not known:
            return pb.ListJobsResponse()
        page = await self._apis.reader.list_jobs(
            request.tenant_id,
            page_size=request.page_size,
            cursor=request.cursor,
            statuses=known,
        )
        return pb.ListJobsResponse(
            jobs=[job_to_pb(job) for job in page.jobs],
            next_cursor=page.next_cursor or "",
        )

    @_map_errors
    async def CancelJob(self, request: pb.CancelJobRequest, context: Context) -> pb.Job:
        job = await self._apis.cancels.cancel(request.tenant_id, request.job_id)
        return job_to_pb(job)

    @_map_stream_errors
    async def WatchJob(
        self, request: pb.WatchJobRequest, context: Context
    ) -> AsyncIterator[pb.JobUpdate]:
        async for update in self._apis.reader.watch(request.tenant_id, request.job_id):
            yield pb.JobUpdate(
                job=job_to_pb(update.job),
                kind=_UPDATE_TO_PB[update.kind],
                new_outputs=[output_to_pb(output) for output in update.new_outputs],
            )

    @_map_errors
    async def ClaimJob(
        self, request: pb.ClaimJobRequest, context: Context
    ) -> pb.ClaimJobResponse:
        outcome = await self._apis.claims.claim(
            request.tenant_id, request.job_id, request.worker_id
        )
        response = pb.ClaimJobResponse(
            granted=outcome.granted,
            attempt=outcome.job.attempt if outcome.granted else 0,
            reason=outcome.reason.value if outcome.reason is not None else "",
            job=job_to_pb(outcome.job),
        )
        if outcome.assignment is not None:
            response.assignment.CopyFrom(assignment_to_pb(outcome.assignment))
        return response

    @_map_errors
    async def AcquireJob(
        self, request: pb.AcquireJobRequest, context: Context
    ) -> pb.AcquireJobResponse:
        assignment = await self._apis.claims.acquire(
            request.worker_id, request.pool, request.wait_seconds
        )
        if assignment is None:
            return pb.AcquireJobResponse()
        return pb.AcquireJobResponse(assignment=assignment_to_pb(assignment))

    @_map_errors
    async def RenewLeases(
        self, request: pb.RenewLeasesRequest, context: Context
    ) -> pb.RenewLeasesResponse:
        renewal = await self._apis.claims.renew(
            request.worker_id,
            [(lease.job_id, lease.attempt) for lease in request.leases],
        )
        return pb.RenewLeasesResponse(
            leases=[
                pb.LeaseStatus(
                    job_id=lease.job_id,
                    attempt=lease.attempt,
                    state=_LEASE_TO_PB[lease.state],
                )
                for lease in renewal.leases
            ],
            lease_seconds=renewal.lease_seconds,
        )


def _priority(value: int) -> Priority:
    try:
        return _PRIORITY_FROM_PB[value]
    except KeyError:
        raise InvalidArgumentError("priority", f"unknown value {value}") from None


def _status(value: int) -> JobStatus | None:
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
