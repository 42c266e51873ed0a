"""HTTP routes of jobs: decode, call the service, encode."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Request, Response, status
from sse_starlette import EventSourceResponse, ServerSentEvent

from comfyserve.contracts.scopes import Scope
from comfyserve.gateway.auth.dependencies import Access
from comfyserve.gateway.auth.services import Served, service
from comfyserve.gateway.errors import InvalidIdempotencyKeyError
from comfyserve.gateway.jobs.events import JobEvent
from comfyserve.gateway.jobs.models import (
    MAX_METADATA_KEY_CHARS,
    MAX_METADATA_KEYS,
    MAX_METADATA_VALUE_CHARS,
    MAX_PAGE_SIZE,
    MAX_TIMEOUT_MINUTES,
    MIN_TIMEOUT_MINUTES,
    ExecuteRequest,
    Job,
    JobAccepted,
    JobPage,
    JobStatus,
    ValidateRequest,
    ValidationResult,
)
from comfyserve.gateway.jobs.service import JobsService
from comfyserve.gateway.limits.policy import RouteClass
from comfyserve.gateway.openapi.answers import (
    BODY_TOO_LARGE,
    INVALID_IDEMPOTENCY_KEY,
    INVALID_REQUEST,
    INVALID_WORKFLOW,
    WORKFLOW_FORMAT_UI,
)
from comfyserve.gateway.openapi.responses import calls, error_responses, guarded
from comfyserve.gateway.settings import Settings

router = APIRouter(prefix="/workflows", tags=["workflows"])

READ = Access(RouteClass.READ, Scope.WORKFLOWS_READ)
WRITE = Access(RouteClass.SUBMIT, Scope.WORKFLOWS_WRITE)

# What every job route says about the body limit and the job's fields.
_BODY_LIMIT = (
    "The JSON body is at most ${max_body_bytes} bytes (`GATEWAY_MAX_BODY_BYTES`), "
    "counted as sent; its `workflow` graph at most ${max_workflow_bytes} bytes as "
    "compact JSON."
)
_JOB_FIELDS = (
    "`status` is `pending`, `running`, `completed`, `failed` (expired jobs "
    "included; `error.code` says why) or `cancelled`; `cancel_requested` is true "
    "once a cancel was taken while the job ran."
)


def jobs_service(served: Served) -> JobsService:
    """The caller's jobs, as every surface's job routes use them."""
    resources = served.resources
    return JobsService(
        resources.workflow, resources.storage, served.caller.tenant_id, served.links
    )


ReadJobs = Annotated[JobsService, Depends(service(READ, jobs_service))]
WriteJobs = Annotated[JobsService, Depends(service(WRITE, jobs_service))]


# async, though it awaits nothing: FastAPI runs a plain function dependency in
# a worker thread, a hand-off per request.
async def _idempotency_key(
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
    summary="Submit a workflow",
    description=(
        "Queues an API-format graph and answers at once with the execution's id "
        "and links; follow it with `GET /workflows/{id}` or its event stream. "
        f"{_BODY_LIMIT} At most {MAX_METADATA_KEYS} `metadata` entries (keys of 1 "
        f"to {MAX_METADATA_KEY_CHARS} characters, values of at most "
        f"{MAX_METADATA_VALUE_CHARS}); `timeout_minutes` from "
        f"{MIN_TIMEOUT_MINUTES} to {MAX_TIMEOUT_MINUTES} (10 by default), for one "
        "attempt. The same `Idempotency-Key` (1 to 255 printable ASCII characters) "
        "with the same body returns the first job with `Idempotent-Replayed: true`."
    ),
    responses=error_responses(
        *guarded(WRITE),
        INVALID_IDEMPOTENCY_KEY,
        BODY_TOO_LARGE,
        INVALID_REQUEST,
        INVALID_WORKFLOW,
        WORKFLOW_FORMAT_UI,
        *calls("submit_job"),
    ),
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


@router.post(
    "/validate",
    response_model=ValidationResult,
    summary="Validate a workflow without running it",
    description=(
        "Checks a graph exactly as `POST /workflows/execute` would, against the "
        f"nodes the executors offer, and queues nothing. {_BODY_LIMIT}"
    ),
    responses=error_responses(
        *guarded(WRITE),
        BODY_TOO_LARGE,
        INVALID_REQUEST,
        INVALID_WORKFLOW,
        WORKFLOW_FORMAT_UI,
        *calls("validate_workflow"),
    ),
)
async def validate_workflow(body: ValidateRequest, jobs: WriteJobs) -> ValidationResult:
    await jobs.validate(body.workflow)
    return ValidationResult(valid=True)


@router.get(
    "",
    response_model=JobPage,
    summary="List executions",
    description=(
        "The caller's executions, newest first, without outputs or progress. "
        f"`limit` is 1 to {MAX_PAGE_SIZE} (20 by default); pass `next_cursor` as "
        "`cursor` for the next page (it is null on the last). `status` may be "
        f"repeated. {_JOB_FIELDS}"
    ),
    responses=error_responses(*guarded(READ), INVALID_REQUEST, *calls("list_jobs")),
)
async def list_workflows(
    jobs: ReadJobs,
    status_filter: Annotated[
        list[JobStatus] | None, Query(alias="status", description="Repeatable.")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = 20,
    cursor: Annotated[str | None, Query(max_length=1024)] = None,
) -> JobPage:
    return await jobs.page(status_filter or [], limit, cursor)


@router.get(
    "/{execution_id}",
    response_model=Job,
    summary="Get an execution",
    description=(
        "The execution with its progress, error and outputs, each output with a "
        f"short-lived presigned download `url` (null once the file is gone). "
        f"{_JOB_FIELDS}"
    ),
    responses=error_responses(*guarded(READ), *calls("get_job", "get_download_urls")),
)
async def get_workflow(execution_id: str, jobs: ReadJobs) -> Job:
    return await jobs.get(execution_id)


@router.post(
    "/{execution_id}/cancel",
    response_model=Job,
    summary="Cancel an execution",
    description=(
        "A pending execution is `cancelled` at once. A running one answers "
        "`status: running` with `cancel_requested: true`: its worker is told to "
        "stop, and the execution becomes `cancelled` when it has (or ends as it "
        "would have, if it finished first). An execution that has ended is "
        "returned unchanged. Answers the execution like `GET /workflows/{id}`."
    ),
    responses=error_responses(
        *guarded(WRITE), *calls("cancel_job", "get_download_urls")
    ),
)
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
        **error_responses(*guarded(READ), *calls("watch_job")),
    },
    summary="Follow an execution as server-sent events",
    description=(
        "Events: `status` ({status, queue_position, error}) when it changes, "
        "`progress` ({progress}) while it runs and `output` (an output, with its "
        "`url`) as each is stored. Every output precedes the final `status`, "
        "after which the stream ends; a `: ping` comment comes every "
        "`GATEWAY_SSE_KEEPALIVE_SECONDS`. Errors are answered before the stream "
        "starts."
    ),
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
