"""What the routes use: the clients `app.py` builds once per process."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Annotated, cast

import httpx
from fastapi import Depends, Request

from comfyserve.gateway.adapters.auth import AuthClient
from comfyserve.gateway.adapters.notifier import NotifierClient
from comfyserve.gateway.adapters.probes import Probe
from comfyserve.gateway.adapters.storage import StorageClient
from comfyserve.gateway.adapters.workflow import WorkflowClient
from comfyserve.gateway.auth.principal import Authenticator
from comfyserve.gateway.limits.gcra import RateLimiter
from comfyserve.gateway.limits.suspensions import Suspensions
from comfyserve.gateway.native.routing import PromptRouter
from comfyserve.gateway.settings import Settings
from comfyserve.gateway.v2.idempotency import IdempotencyClaims


@dataclass(frozen=True, slots=True)
class Resources:
    authenticator: Authenticator
    auth: AuthClient
    workflow: WorkflowClient
    storage: StorageClient
    notifier: NotifierClient
    limiter: RateLimiter
    suspensions: Suspensions
    # Tells native WebSockets, on any replica, of their clients' prompts.
    prompt_router: PromptRouter
    # Single-use Idempotency-Key claims of v2 submits.
    idempotency: IdempotencyClaims
    # Sends upload bytes to presigned object-store URLs.
    http: httpx.AsyncClient
    probes: Sequence[Probe]


ResourcesFactory = Callable[[Settings], AbstractAsyncContextManager[Resources]]


async def _resources(request: Request) -> Resources:
    return cast(Resources, request.state.resources)


ResourcesDep = Annotated[Resources, Depends(_resources)]
