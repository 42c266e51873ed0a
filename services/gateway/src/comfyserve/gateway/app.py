"""The composition root: settings in, an app out; clients live in its lifespan.

`open_resources` builds them, one async context manager per resource composed
in one place, and closes them in reverse.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import aclosing, asynccontextmanager
from typing import Any

import httpx
from fastapi import FastAPI
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.trace import TracerProvider
from starlette.middleware.cors import CORSMiddleware
from starlette.types import Scope

from comfyserve.gateway.accounts.endpoints import router as accounts_router
from comfyserve.gateway.adapters.auth import GrpcAuthClient
from comfyserve.gateway.adapters.notifier import GrpcNotifierClient
from comfyserve.gateway.adapters.probes import GrpcHealthProbe, RedisProbe
from comfyserve.gateway.adapters.storage import GrpcStorageClient
from comfyserve.gateway.adapters.workflow import WORKFLOW_SERVICE, GrpcWorkflowClient
from comfyserve.gateway.admin.endpoints import router as admin_router
from comfyserve.gateway.auth.principal import Authenticator, BootstrapKeys
from comfyserve.gateway.docs import add_docs
from comfyserve.gateway.files.endpoints import router as files_router
from comfyserve.gateway.handlers import exception_handlers
from comfyserve.gateway.jobs.endpoints import router as jobs_router
from comfyserve.gateway.limits.gcra import RedisRateLimiter
from comfyserve.gateway.limits.suspensions import RedisSuspensions
from comfyserve.gateway.metrics import HttpMetrics
from comfyserve.gateway.middleware import (
    EXPOSED_HEADERS,
    REQUEST_ID_HEADER,
    BodyLimitMiddleware,
    RequestContextMiddleware,
)
from comfyserve.gateway.native.files import router as native_files_router
from comfyserve.gateway.native.jobs_api import router as native_jobs_router
from comfyserve.gateway.native.prompts import router as native_queue_router
from comfyserve.gateway.native.routing import RedisPromptRouter, subscriber_redis
from comfyserve.gateway.native.system import router as native_system_router
from comfyserve.gateway.native.ws import router as native_ws_router
from comfyserve.gateway.openapi.document import GatewayApp
from comfyserve.gateway.ops.endpoints import router as ops_router
from comfyserve.gateway.resources import Resources, ResourcesFactory
from comfyserve.gateway.settings import MULTIPART_OVERHEAD_BYTES, Settings
from comfyserve.gateway.v2.assets import router as v2_assets_router
from comfyserve.gateway.v2.events import StreamSlots
from comfyserve.gateway.v2.events import router as v2_events_router
from comfyserve.gateway.v2.idempotency import RedisIdempotencyClaims
from comfyserve.gateway.v2.jobs import router as v2_jobs_router
from comfyserve.gateway.webhooks.endpoints import router as webhooks_router
from comfyserve.runtime.grpc import insecure_channel
from comfyserve.runtime.identity import connect_auth
from comfyserve.runtime.redis import redis_client

# Presigned PUTs of large files may take a while; connecting must not.
_UPLOAD_TIMEOUT = httpx.Timeout(300.0, connect=10.0)


def upload_client() -> httpx.AsyncClient:
    """The client that PUTs upload bytes to presigned object-store URLs."""
    return httpx.AsyncClient(timeout=_UPLOAD_TIMEOUT, follow_redirects=False)


@asynccontextmanager
async def open_resources(settings: Settings) -> AsyncIterator[Resources]:
    """The production wiring: gRPC channels, Redis and an HTTP client.

    Workflow, storage and the notifier are called with this gateway's service
    key, naming the tenant its caller belongs to; the auth service with no
    credential of the gateway's own (calls that act for a caller carry the
    caller's).
    """
    service_key = settings.service_credential
    async with (
        connect_auth(settings) as verifier,
        insecure_channel(settings.auth_grpc_target) as auth_channel,
        insecure_channel(
            settings.workflow_grpc_target, service_key
        ) as workflow_channel,
        insecure_channel(settings.storage_grpc_target, service_key) as storage_channel,
        insecure_channel(
            settings.notifier_grpc_target, service_key
        ) as notifier_channel,
        aclosing(
            redis_client(settings.redis_url, settings.redis_timeout_seconds)
        ) as redis,
        aclosing(
            subscriber_redis(settings.redis_url, settings.redis_timeout_seconds)
        ) as subscriber,
        aclosing(upload_client()) as http,
    ):
        yield Resources(
            authenticator=Authenticator(BootstrapKeys(settings.api_keys), verifier),
            auth=GrpcAuthClient(auth_channel, settings.auth_timeout_seconds),
            workflow=GrpcWorkflowClient(
                workflow_channel, settings.grpc_timeout_seconds
            ),
            storage=GrpcStorageClient(storage_channel, settings.grpc_timeout_seconds),
            notifier=GrpcNotifierClient(
                notifier_channel, settings.grpc_timeout_seconds
            ),
            limiter=RedisRateLimiter(redis),
            suspensions=RedisSuspensions(redis),
            prompt_router=RedisPromptRouter(subscriber),
            idempotency=RedisIdempotencyClaims(redis),
            http=http,
            probes=(
                # Ready means a job can be accepted: the workflow service serves
                # its service name only once an executor's node catalog exists.
                GrpcHealthProbe("workflow", workflow_channel, WORKFLOW_SERVICE),
                GrpcHealthProbe("storage", storage_channel),
                RedisProbe(redis),
            ),
        )


# Routes that take a file: the REST upload, v2 assets and native uploads.
_UPLOAD_PATHS = frozenset(
    {
        "/files",
        "/api/v2/assets",
        *(
            f"{prefix}/upload/{kind}"
            for prefix in ("", "/api")
            for kind in ("image", "mask")
        ),
    }
)


def _body_limit(settings: Settings) -> Callable[[Scope], int]:
    upload_limit = settings.max_upload_bytes + MULTIPART_OVERHEAD_BYTES

    def limit_for(scope: Scope) -> int:
        # Behind a proxy's prefix the path carries the root path too.
        path: str = scope["path"]
        root: str = scope.get("root_path", "")
        if root and path.startswith(root):
            path = path[len(root) :]
        if scope["method"] == "POST" and path.rstrip("/") in _UPLOAD_PATHS:
            return upload_limit
        return settings.max_body_bytes

    return limit_for


def _description(settings: Settings) -> str:
    return (
        "Every route but `/health/*` needs `Authorization: Bearer <key>`; another "
        "tenant's execution or file answers 404 like a missing one. Every error "
        'is an `ErrorBody`: `{"error": <code>, "detail": <text>, ...}`.\n\n'
        "Limits in force: a JSON body carries at most ${max_body_bytes} bytes, "
        "and its workflow graph at most ${max_workflow_bytes} bytes as compact "
        "JSON; an uploaded file at most ${max_upload_bytes} bytes; the request "
        "line and headers together at most ${max_header_bytes} bytes. A body or "
        "file over its limit answers 413 `payload_too_large` with the limit in "
        "`limit_bytes`; a graph over its limit, 422 `invalid_workflow` "
        "(`prompt_limit_exceeded`); a request head over its limit, a bare 400 "
        "from the HTTP server."
    )


def create_app(
    settings: Settings,
    resources: ResourcesFactory = open_resources,
    tracer_provider: TracerProvider | None = None,
) -> FastAPI:
    """The gateway app; `resources` builds its clients (tests pass fakes), and
    requests are traced by `tracer_provider` (default: the global one)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        async with resources(settings) as opened:
            yield {"resources": opened}

    metrics = HttpMetrics()
    app = GatewayApp(
        settings,
        title="ComfyUI Serverless API",
        summary="Run ComfyUI workflows over HTTP.",
        description=_description(settings),
        version="1.0.0",
        lifespan=lifespan,
        exception_handlers=exception_handlers(),
        # Served by `add_docs` with local assets instead of FastAPI's CDN ones.
        docs_url=None,
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.v2_streams = StreamSlots(settings.v2_max_streams)
    app.include_router(jobs_router)
    app.include_router(v2_jobs_router)
    app.include_router(v2_events_router)
    app.include_router(files_router)
    app.include_router(v2_assets_router)
    app.include_router(native_files_router)
    app.include_router(accounts_router)
    app.include_router(admin_router)
    app.include_router(ops_router)
    app.include_router(webhooks_router)
    # ComfyUI serves every route twice, at `/x` and `/api/x`; its jobs API
    # lives at `/api/jobs` only.
    for prefix in ("", "/api"):
        app.include_router(native_queue_router, prefix=prefix)
        app.include_router(native_system_router, prefix=prefix)
    app.include_router(native_jobs_router)
    app.include_router(native_ws_router)
    add_docs(app)

    # Added innermost first: the body limit sits closest to the routes.
    app.add_middleware(BodyLimitMiddleware, limit_for=_body_limit(settings))
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            # Callers send bearer tokens, never cookies: no credentialed CORS.
            allow_credentials=False,
            allow_methods=["GET", "POST", "PUT", "DELETE", "OPTIONS"],
            allow_headers=[
                "Authorization",
                "Content-Type",
                "Idempotency-Key",
                REQUEST_ID_HEADER,
            ],
            expose_headers=EXPOSED_HEADERS,
        )
    app.add_middleware(RequestContextMiddleware, metrics=metrics)
    # Outermost of all: every answer, errors included, is in the request's
    # span. Spans per ASGI message would be one per SSE event, so none.
    FastAPIInstrumentor.instrument_app(
        app, tracer_provider=tracer_provider, exclude_spans=["receive", "send"]
    )
    return app
