"""The worker's small HTTP surface: liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest


def create_http_app(
    registry: CollectorRegistry, ready: Callable[[], bool]
) -> web.Application:
    async def live(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readiness(_: web.Request) -> web.Response:
        if ready():
            return web.json_response({"status": "ready"})
        return web.json_response({"status": "not_ready"}, status=503)

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(
            body=generate_latest(registry),
            headers={"Content-Type": CONTENT_TYPE_LATEST},
        )

    app = web.Application()
    app.router.add_get("/health/live", live)
    app.router.add_get("/health/ready", readiness)
    app.router.add_get("/metrics", metrics)
    return app
