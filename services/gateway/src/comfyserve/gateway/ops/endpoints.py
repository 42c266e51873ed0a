"""Liveness, readiness and Prometheus metrics; none needs a principal."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from comfyserve.gateway.errors import error_response
from comfyserve.gateway.openapi.answers import NOT_READY
from comfyserve.gateway.openapi.responses import error_responses
from comfyserve.gateway.ops.models import Liveness, Readiness
from comfyserve.gateway.resources import ResourcesDep
from comfyserve.gateway.settings import Settings

router = APIRouter(tags=["operations"])


@router.get(
    "/health/live",
    response_model=Liveness,
    summary="Liveness",
    description="Always 200 while the process serves; checks nothing else.",
)
async def live() -> Liveness:
    return Liveness(status="ok")


@router.get(
    "/health/ready",
    response_model=Readiness,
    summary="Readiness",
    description=(
        "200 when a job can be accepted: the workflow service serves "
        "`comfyserve.workflow.v1.WorkflowService` (an executor has published its "
        "node catalog), the storage service serves and Redis answers `PING`, each "
        "within `GATEWAY_READINESS_TIMEOUT_SECONDS`."
    ),
    responses=error_responses(NOT_READY),
)
async def ready(request: Request, resources: ResourcesDep) -> JSONResponse:
    settings: Settings = request.app.state.settings
    results = await asyncio.gather(
        *(probe.check(settings.readiness_timeout_seconds) for probe in resources.probes)
    )
    checks = {
        probe.name: "ok" if passed else "failed"
        for probe, passed in zip(resources.probes, results, strict=True)
    }
    failed = [name for name, state in checks.items() if state != "ok"]
    if failed:
        return error_response(
            503,
            "not_ready",
            f"Not ready: {', '.join(failed)}",
            failed=failed,
            checks=checks,
        )
    return JSONResponse(Readiness(status="ready", checks=checks).model_dump())
