"""HTTP routes of jobs: decode, call the service, encode."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Request, Response, status
from sse_starlette import EventSourceResponse, ServerSentEvent

from comfyserve.contracts.limits import MAX_WORKFLOW_BYTES
from comfyserve.gateway.auth import Principal, Scope, require_scope
from comfyserve.gateway.errors import InvalidIdempotencyKeyError
from comfyserve.gateway.jobs.models import (
    ExecuteRequest,
    Job,
    JobAccepted,
    JobPage,
    JobStatus,
    ValidateRequest,
    ValidationResult,
)
from comfyserve.gateway.jobs.service import JobEvent, JobsService
from comfyserve.gateway.links import LinksDep
from comfyserve.gateway.resources import ResourcesDep
from comfyserve.gateway.settings import DEFAULT_MAX_BODY_BYTES, Settings

router = APIRouter(prefix="/workflows", tags=["workflows"])

JobsReader = Annotated[Principal, Depends(require_scope(Scope.JOBS_READ))]
JobsWriter = Annotated[Principal, Depends(require_scope(Scope.JOBS_WRITE))]

_ERROR_RESPONSES: dict[int | str, dict[str, object]] = {
    401: {"description": "Missing or invalid credentials"},
    404: {"description": "No such execution (or another tenant's)"},
    422: {"description": "Invalid request or workflow"},
    503: {"description": "A backing service is unavailable"},
}
_BODY_RESPONSES: dict[int | str, dict[str, object]] = {
    **_ERROR_RESPONSES,
    413: {
        "description": (
            "The JSON body is over `GATEWAY_MAX_BODY_BYTES` (by default "
            f"{DEFAULT_MAX_BODY_BYTES} bytes); `limit_bytes` holds the limit"
        )
    },
    422: {
        "description": (
            "Invalid request or workflow; a graph over "
            f"{MAX_WORKFLOW_BYTES} bytes as compact JSON is `invalid_workflow` "
            "with `error_type` `prompt_limit_exceeded`"
        )
    },
}


def _reader_service(
    principal: JobsReader, resources: ResourcesDep, links: LinksDep
) -> JobsService:
    return JobsService(
        resources.workflow, resources.storage, principal.tenant_id, links
    )


def _writer_service(
    principal: JobsWriter, resources: ResourcesDep, links: LinksDep
) -> JobsService:
    return JobsService(
        resources.workflow, resources.storage, principal.tenant_id, links
    )


ReadJobs = Annotated[JobsService, Depends(_reader_service)]
WriteJobs = Annotated[JobsService, Depends(_writer_service)]


def _idempotency_key(
    idempotency_key: Annotated[
        str | None,
        Header(description="Makes a retried submission return the first job."),
    ] = None,
) -> str | None:
    if idempotency_key is None:
        return None
    if not 1 <= len(idempotency_key) <= 255 or not all(
        " " <= char <= "~" for char in idempotency_key
    ):
        raise InvalidIdempotencyKeyError(
            "Idempotency-Key must be 1 to 255 printable ASCII characters"
        )
    return idempotency_key


@router.post(
    "/execute",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=JobAccepted,
    responses=_BODY_RESPONSES,
)
async def execute_workflow(
    body: ExecuteRequest,
    response: Response,
    jobs: WriteJobs,
    idempotency_key: Annotated[str | None, Depends(_idempotency_key)],
) -> JobAccepted:
    submitted = await jobs.submit(body, idempotency_key)
    response.headers["Location"] = submitted.job.links.self
    if submitted.replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return submitted.job


@router.post("/validate", response_model=ValidationResult, responses=_BODY_RESPONSES)
async def validate_workflow(body: ValidateRequest, jobs: WriteJobs) -> ValidationResult:
    await jobs.validate(body.workflow)
    return ValidationResult(valid=True)


@router.get("", response_model=JobPage, responses=_ERROR_RESPONSES)
async def list_workflows(
    jobs: ReadJobs,
    status_filter: Annotated[
        list[JobStatus] | None, Query(alias="status", description="Repeatable.")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=1024)] = None,
) -> JobPage:
    return await jobs.page(status_filter or [], limit, cursor)


@router.get("/{execution_id}", response_model=Job, responses=_ERROR_RESPONSES)
async def get_workflow(execution_id: str, jobs: ReadJobs) -> Job:
    return await jobs.get(execution_id)


@router.post("/{execution_id}/cancel", response_model=Job, responses=_ERROR_RESPONSES)
async def cancel_workflow(execution_id: str, jobs: WriteJobs) -> Job:
    return await jobs.cancel(execution_id)


async def _server_sent(
    events: AsyncIterator[JobEvent],
) -> AsyncIterator[ServerSentEvent]:
    async for event in events:
        yield ServerSentEvent(data=event.data.model_dump_json(), event=event.name)


@router.get(
    "/{execution_id}/events",
    response_class=EventSourceResponse,
    responses={
        200: {
            "description": (
                "Server-sent events: `status`, `progress` and `output`; every "
                "output precedes the final `status`, after which the stream ends."
            ),
            "content": {"text/event-stream": {}},
        },
        **_ERROR_RESPONSES,
    },
)
async def watch_workflow(
    execution_id: str, jobs: ReadJobs, request: Request
) -> EventSourceResponse:
    events = await jobs.watch(execution_id)
    settings: Settings = request.app.state.settings
    return EventSourceResponse(
        _server_sent(events),
        ping=settings.sse_keepalive_seconds,
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
