"""What the routes use, built once per process in the app's lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, cast

import httpx
from fastapi import Depends, Request
from redis.asyncio import Redis

from comfyserve.gateway.adapters.probes import GrpcHealthProbe, Probe, RedisProbe
from comfyserve.gateway.adapters.storage import GrpcStorageClient, StorageClient
from comfyserve.gateway.adapters.workflow import (
    WORKFLOW_SERVICE,
    GrpcWorkflowClient,
    WorkflowClient,
)
from comfyserve.gateway.auth.principal import Authenticator, StaticKeyAuthenticator
from comfyserve.gateway.settings import Settings
from comfyserve.runtime.grpc import insecure_channel

# Presigned PUTs of large files may take a while; connecting must not.
_UPLOAD_TIMEOUT = httpx.Timeout(300.0, connect=10.0)


@dataclass(frozen=True, slots=True)
class Resources:
    authenticator: Authenticator
    workflow: WorkflowClient
    storage: StorageClient
    # Sends upload bytes to presigned object-store URLs.
    http: httpx.AsyncClient
    probes: Sequence[Probe]


ResourcesFactory = Callable[[Settings], AbstractAsyncContextManager[Resources]]


def upload_client() -> httpx.AsyncClient:
    """The client that PUTs upload bytes to presigned object-store URLs."""
    return httpx.AsyncClient(timeout=_UPLOAD_TIMEOUT, follow_redirects=False)


@asynccontextmanager
async def open_resources(settings: Settings) -> AsyncIterator[Resources]:
    """The production wiring: gRPC channels, Redis and an HTTP client."""
    workflow_channel = insecure_channel(settings.workflow_grpc_target)
    storage_channel = insecure_channel(settings.storage_grpc_target)
    redis = Redis.from_url(settings.redis_url)
    http = upload_client()
    try:
        yield Resources(
            authenticator=StaticKeyAuthenticator(settings.api_keys),
            workflow=GrpcWorkflowClient(
                workflow_channel, settings.grpc_timeout_seconds
            ),
            storage=GrpcStorageClient(storage_channel, settings.grpc_timeout_seconds),
            http=http,
            probes=(
                # Ready means a job can be accepted: the workflow service serves
                # its service name only once an executor's node catalog exists.
                GrpcHealthProbe("workflow", workflow_channel, WORKFLOW_SERVICE),
                GrpcHealthProbe("storage", storage_channel),
                RedisProbe(redis),
            ),
        )
    finally:
        await http.aclose()
        await redis.aclose()
        await storage_channel.close()
        await workflow_channel.close()


def _resources(request: Request) -> Resources:
    return cast(Resources, request.state.resources)


ResourcesDep = Annotated[Resources, Depends(_resources)]
