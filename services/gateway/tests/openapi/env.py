"""What the OpenAPI tests drive: the app's client and fakes, and how to call a
route as it should be called."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import grpc
import httpx

from ..fakes.auth import ADMIN_TENANT, USER_TENANT

NO_SUCH_ID = "00000000-0000-4000-8000-000000000000"

# Who a route is called as: a bootstrap key, a user's token, an administrator's.
CallerName = Literal["bootstrap", "user", "admin"]


@dataclass
class Env:
    """The app's client, the fakes behind it, and a job and a file of tenant A."""

    client: httpx.AsyncClient
    workflow: Any
    storage: Any
    notifier: Any
    object_store: Any
    auth_service: Any
    limiter: Any
    suspensions: Any
    probes: list[Any]
    rpc_error: Callable[..., grpc.aio.AioRpcError]
    auth: dict[str, str]
    user: dict[str, str]
    admin: dict[str, str]
    no_scopes: dict[str, str]
    auth_down: dict[str, str]
    tenant: str
    job_id: str
    file_id: str
    endpoint_id: str
    delivery_id: str

    def reset(self) -> None:
        for fake in (self.workflow, self.storage, self.notifier, self.auth_service):
            fake.failures.clear()
            fake.calls.clear()
        self.workflow.validation_errors = None
        self.object_store.refuse = False
        for probe in self.probes:
            probe.healthy = True
        self.limiter.used.clear()
        self.limiter.down = False
        self.limiter.exhausted = False
        self.suspensions.suspended.clear()
        self.suspensions.down = False
        self.auth_service.keys.clear()
        self.auth_service.throttled.clear()
        for tenant in self.auth_service.tenants.values():
            tenant.suspended = False

    def headers(self, caller: CallerName) -> dict[str, str]:
        return {"bootstrap": self.auth, "user": self.user, "admin": self.admin}[caller]

    def tenant_of(self, caller: CallerName) -> str:
        return {"bootstrap": self.tenant, "user": USER_TENANT, "admin": ADMIN_TENANT}[
            caller
        ]


Send = Callable[[Env, Mapping[str, str]], Awaitable[httpx.Response]]
Driver = Callable[[Env], Awaitable[httpx.Response]]


@dataclass(frozen=True)
class Route:
    """How to call a route as it should be called, and its own failures."""

    send: Send
    # Answer name → requests that must get that answer (besides those injected
    # into the backing calls and those of the route's guard).
    scenarios: Mapping[str, Sequence[Driver]] = field(default_factory=dict)
    public: bool = False
    caller: CallerName = "bootstrap"

    async def call(self, env: Env) -> httpx.Response:
        """The route called as it should be."""
        return await self.send(env, env.headers(self.caller))
