"""Liveness, readiness and Prometheus metrics; none needs a principal."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from comfyserve.gateway.errors import error_response
from comfyserve.gateway.resources import ResourcesDep
from comfyserve.gateway.settings import Settings

router = APIRouter(tags=["operations"])


@router.get("/health/live")
async def live() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/health/ready",
    responses={503: {"description": "Lists the dependencies that failed"}},
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
    body: dict[str, Any] = {"status": "ready", "checks": checks}
    return JSONResponse(body)


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    registry: CollectorRegistry = request.app.state.metrics.registry
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
