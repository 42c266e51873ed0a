"""ComfyUI's newest jobs API (G3): `/api/jobs`, `/api/jobs/{id}` and the two
cancels. Mounted once, at `/api/jobs`, where ComfyUI serves it.

`workflow_id` filters on the frontend's workflow id in `extra_pnginfo`, which
this product does not keep: any `workflow_id` matches no job."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse

from comfyserve.contracts.pb.workflow.v1 import workflow_pb2 as wf
from comfyserve.gateway.native.answers import answer, json_body
from comfyserve.gateway.native.prompts import Reader, Writer
from comfyserve.gateway.native.service import (
    ACTIVE,
    PAGE,
    NativeRefusal,
    canonical_id,
)
from comfyserve.gateway.native.shapes import (
    JOB_STATUSES,
    STATUS_FILTERS,
    job_detail,
    job_summary,
)

router = APIRouter(prefix="/api/jobs", tags=["native"], include_in_schema=False)

_ORDERS = {
    ("created_at", "desc"): wf.JOB_ORDER_NEWEST_FIRST,
    ("created_at", "asc"): wf.JOB_ORDER_OLDEST_FIRST,
    ("execution_duration", "desc"): wf.JOB_ORDER_LONGEST_FIRST,
    ("execution_duration", "asc"): wf.JOB_ORDER_SHORTEST_FIRST,
}


def _refuse(message: str) -> NativeRefusal:
    return NativeRefusal(400, {"error": message})


def _statuses(value: str | None) -> list[wf.JobStatus.ValueType]:
    if value is None:
        return []
    names = [name.strip() for name in value.split(",") if name.strip()]
    unknown = [name for name in names if name not in STATUS_FILTERS]
    if unknown:
        raise _refuse(
            f"Invalid status value(s): {', '.join(unknown)}. "
            f"Valid values: {', '.join(JOB_STATUSES)}"
        )
    return sorted({code for name in names for code in STATUS_FILTERS[name]})


def _integer(name: str, value: str | None, *, least: int) -> int | None:
    if value is None:
        return None
    try:
        number = int(value)
    except ValueError:
        raise _refuse(f"{name} must be an integer") from None
    if number < least:
        raise _refuse(f"{name} must be at least {least}")
    return number


@router.get("")
async def list_jobs(
    jobs: Reader,
    status: Annotated[str | None, Query()] = None,
    workflow_id: Annotated[str | None, Query()] = None,
    sort_by: Annotated[str, Query()] = "created_at",
    sort_order: Annotated[str, Query()] = "desc",
    limit: Annotated[str | None, Query()] = None,
    offset: Annotated[str | None, Query()] = None,
) -> Response:
    async def read() -> dict[str, Any]:
        order = _ORDERS.get((sort_by, sort_order))
        if order is None:
            raise _refuse(
                "sort_by must be created_at or execution_duration, "
                "and sort_order asc or desc"
            )
        statuses = _statuses(status)
        size = _integer("limit", limit, least=1)
        skip = _integer("offset", offset, least=0) or 0
        if workflow_id:
            found: list[dict[str, Any]] = []
            total = 0
        else:
            page = await jobs.listing(
                statuses,
                order=order,
                offset=skip,
                limit=size or PAGE,
                with_graph=False,
            )
            found = [job_summary(job) for job in page.jobs]
            total = page.total
        return {
            "jobs": found,
            "pagination": {
                "offset": skip,
                "limit": size,
                "total": total,
                "has_more": skip + len(found) < total,
            },
        }

    return await answer(read())


@router.get("/{job_id}")
async def get_job(job_id: str, jobs: Reader) -> Response:
    job = await jobs.find(job_id)
    if job is None:
        return JSONResponse({"error": "Job not found"}, status_code=404)
    return JSONResponse(job_detail(job))


@router.post("/cancel")
async def cancel_jobs(request: Request, jobs: Writer) -> Response:
    async def cancel() -> dict[str, Any]:
        job_ids = (await json_body(request)).get("job_ids")
        if not isinstance(job_ids, list) or not job_ids:
            raise _refuse("job_ids must be a non-empty list")
        invalid = [
            value
            for value in job_ids
            if not isinstance(value, str) or canonical_id(value) is None
        ]
        if invalid:
            raise NativeRefusal(
                400, {"error": "Invalid job ids", "invalid_ids": invalid}
            )
        return {"cancelled": bool(await jobs.cancel_if(job_ids, ACTIVE))}

    return await answer(cancel())


@router.post("/{job_id}/cancel")
async def cancel_job(job_id: str, jobs: Writer) -> Response:
    cancelled = await jobs.cancel_if([job_id], ACTIVE)
    return JSONResponse({"cancelled": bool(cancelled)})
