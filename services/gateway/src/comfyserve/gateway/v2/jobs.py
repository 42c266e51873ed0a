"""HTTP routes of Comfy API v2 jobs (API.md §A.3): decode, call, encode.

They sit outside our OpenAPI document: API.md is their contract.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Request, Response, status

from comfyserve.contracts.pb.workflow.v1 import workflow_pb2 as wf
from comfyserve.gateway.auth.services import Served, service
from comfyserve.gateway.jobs.endpoints import READ, WRITE, jobs_service
from comfyserve.gateway.v2.errors import V2InvalidRequestError
from comfyserve.gateway.v2.jobs_render import STATUS_FILTER, JobRenderer
from comfyserve.gateway.v2.jobs_request import parse_submit
from comfyserve.gateway.v2.jobs_service import V2JobsService
from comfyserve.gateway.v2.models import Job, JobPage, JobWorkflow

router = APIRouter(prefix="/api/v2", include_in_schema=False)

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 100
MAX_IDEMPOTENCY_KEY_CHARS = 255


def _jobs(served: Served) -> V2JobsService:
    resources, tenant_id = served.resources, served.caller.tenant_id
    retention = timedelta(hours=served.settings.v2_retention_hours)
    return V2JobsService(
        jobs_service(served),
        resources.workflow,
        resources.storage,
        resources.http,
        resources.idempotency,
        tenant_id,
        JobRenderer(served.links, retention),
    )


ReadJobs = Annotated[V2JobsService, Depends(service(READ, _jobs))]
WriteJobs = Annotated[V2JobsService, Depends(service(WRITE, _jobs))]


def _idempotency_key(idempotency_key: str | None) -> str | None:
    if idempotency_key is None:
        return None
    if not 1 <= len(idempotency_key) <= MAX_IDEMPOTENCY_KEY_CHARS or not all(
        " " <= char <= "~" for char in idempotency_key
    ):
        raise V2InvalidRequestError(
            "Idempotency-Key must be 1 to 255 printable ASCII characters"
        )
    return idempotency_key


@router.get("/health")
async def health() -> dict[str, str]:
    return {"status": "healthy"}


@router.post("/jobs", status_code=status.HTTP_201_CREATED, response_model=Job)
async def submit_job(
    request: Request,
    response: Response,
    jobs: WriteJobs,
    idempotency_key: Annotated[str | None, Header()] = None,
) -> Job:
    # The body's faults come before the key's, in the order of §A.3.1.
    body = parse_submit(await request.body())
    job = await jobs.submit(body, _idempotency_key(idempotency_key))
    response.headers["Location"] = job.urls.self
    return job


def _limit(raw: str | None) -> int:
    if raw is None:
        return DEFAULT_PAGE_SIZE
    try:
        limit = int(raw)
    except ValueError:
        limit = 0
    if not 1 <= limit <= MAX_PAGE_SIZE:
        raise V2InvalidRequestError(
            f"`limit` must be an integer from 1 to {MAX_PAGE_SIZE}"
        )
    return limit


def _statuses(raw: str | None) -> list[wf.JobStatus.ValueType]:
    names = [name.strip() for name in (raw or "").split(",") if name.strip()]
    unknown = [name for name in names if name not in STATUS_FILTER]
    if unknown:
        raise V2InvalidRequestError(
            f"Unknown status: {', '.join(unknown)}", extra={"statuses": unknown}
        )
    return [STATUS_FILTER[name] for name in names]


@router.get("/jobs", response_model=JobPage, response_model_exclude_none=True)
async def list_jobs(
    jobs: ReadJobs,
    limit: str | None = None,
    cursor: str | None = None,
    status_filter: Annotated[str | None, Query(alias="status")] = None,
) -> JobPage:
    return await jobs.page(_statuses(status_filter), _limit(limit), cursor or "")


@router.get("/jobs/{job_id}", response_model=Job)
async def get_job(job_id: str, jobs: ReadJobs) -> Job:
    return await jobs.get(job_id)


@router.post("/jobs/{job_id}/cancel", response_model=Job)
async def cancel_job(job_id: str, jobs: WriteJobs) -> Job:
    return await jobs.cancel(job_id)


@router.get("/jobs/{job_id}/workflow", response_model=JobWorkflow)
async def get_job_workflow(job_id: str, jobs: ReadJobs) -> JobWorkflow:
    return await jobs.workflow(job_id)


@router.get("/jobs/{job_id}/logs", status_code=status.HTTP_204_NO_CONTENT)
async def get_job_logs(job_id: str, jobs: ReadJobs) -> Response:
    # No logs are captured; the job must still be the caller's.
    await jobs.get_raw(job_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
