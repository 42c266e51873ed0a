"""FastAPI dependencies: who is calling, and whether it may call this route.

Every route but the public ones depends on an `Access`: the caller's
principal, the scope the route needs, the rate limit of its route class and,
for writes, the tenant's suspension. Public routes that do work (log in,
register, refresh, the JWKS) depend on a `PublicLimit` per client address.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field
from typing import Annotated, cast

import structlog
from fastapi import Depends, Request, WebSocket
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.requests import HTTPConnection

from comfyserve.contracts.scopes import WRITE_SCOPES, Scope
from comfyserve.gateway.auth.principal import is_bootstrap
from comfyserve.gateway.errors import (
    BootstrapKeyError,
    GatewayError,
    MissingScopeError,
    RateLimitedError,
    ServiceUnavailableError,
    UnauthorizedError,
)
from comfyserve.gateway.limits.admission import admit, refuse_suspended
from comfyserve.gateway.limits.gcra import LimitsUnavailable
from comfyserve.gateway.limits.policy import RouteClass, quota_for
from comfyserve.gateway.resources import Resources, ResourcesDep
from comfyserve.gateway.settings import Settings
from comfyserve.runtime.auth import AuthUnavailable, Principal, Unauthenticated

log = structlog.get_logger(__name__)

_bearer = HTTPBearer(
    auto_error=False, description="An access token (JWT) or an API key"
)


@dataclass(frozen=True, slots=True)
class Caller:
    """The principal, and the credential it came with (never logged)."""

    principal: Principal
    credential: str = field(repr=False)

    @property
    def tenant_id(self) -> str:
        return self.principal.tenant_id

    def auth_credential(self) -> str:
        """The credential to act with at the auth service, which knows every
        credential but this deployment's bootstrap keys."""
        if is_bootstrap(self.principal):
            raise BootstrapKeyError()
        return self.credential


def presented_credential(
    connection: HTTPConnection, *, query_token: bool = False
) -> str | None:
    """The credential a caller presented: `Authorization: Bearer <credential>`,
    or HTTP Basic with it as the password (any user name; the user name when
    the password is empty), so clients that take only a URL can carry one in
    `http://user:KEY@host`; with `query_token`, also a `token` query parameter,
    for WebSocket clients that can set no header at all."""
    scheme, _, value = connection.headers.get("authorization", "").partition(" ")
    value = value.strip()
    if scheme.lower() == "bearer":
        return value or None
    if scheme.lower() == "basic":
        return _basic_secret(value)
    if query_token:
        return connection.query_params.get("token") or None
    return None


def _basic_secret(encoded: str) -> str | None:
    try:
        decoded = base64.b64decode(encoded, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, _, password = decoded.partition(":")
    return password or user or None


# The path parameters that name a job on the REST, v2 and native surfaces.
_JOB_PATH_PARAMS = ("execution_id", "job_id", "prompt_id")


def _path_job_id(connection: HTTPConnection) -> dict[str, str]:
    for name in _JOB_PATH_PARAMS:
        value = connection.path_params.get(name)
        # A caller's text: bounded, so a long one cannot bloat every line.
        if isinstance(value, str) and 0 < len(value) <= 64:
            return {"job_id": value}
    return {}


async def authenticate(
    connection: HTTPConnection, resources: Resources, credential: str | None
) -> Caller:
    """The caller behind `credential`; a bad one spends its address's sign-in
    allowance."""
    if not credential:
        raise UnauthorizedError()
    try:
        principal = await resources.authenticator.authenticate(credential)
    except Unauthenticated:
        await _count_bad_credential(connection, resources)
        raise UnauthorizedError("The bearer token is not valid") from None
    except AuthUnavailable as error:
        log.warning("gateway.auth.unavailable", grpc_code=str(error))
        raise ServiceUnavailableError(
            "Credentials cannot be checked now; retry later"
        ) from None
    connection.state.tenant_id = principal.tenant_id
    # The request's later log lines name the tenant and the job its path names
    # (the middleware unbinds them).
    structlog.contextvars.bind_contextvars(
        tenant_id=principal.tenant_id, **_path_job_id(connection)
    )
    return Caller(principal, credential)


async def _authenticated(
    request: Request,
    resources: ResourcesDep,
    # Declared for the OpenAPI document; the credential itself may also come
    # as HTTP Basic, which `presented_credential` reads.
    _: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Caller:
    return await authenticate(request, resources, presented_credential(request))


async def _count_bad_credential(
    connection: HTTPConnection, resources: Resources
) -> None:
    """A bad credential is counted against its address's sign-in allowance:
    guessing keys costs what guessing passwords does, and each unknown key is
    a call to the auth service. Without Redis the 401 stands."""
    settings: Settings = connection.app.state.settings
    quota = quota_for(settings, RouteClass.AUTH, None)
    try:
        decision = await resources.limiter.acquire(
            RouteClass.AUTH.value, f"ip:{client_address(connection)}", quota
        )
    except LimitsUnavailable:
        return
    if not decision.allowed:
        raise RateLimitedError(
            f"Too many bad credentials; retry in {decision.retry_after_s} s",
            decision.wait_s,
            decision.headers(),
        )


def client_address(connection: HTTPConnection) -> str:
    """The client's address; uvicorn takes it from `X-Forwarded-For` only
    when the peer is a trusted proxy (`GATEWAY_FORWARDED_ALLOW_IPS`)."""
    return connection.client.host if connection.client else "unknown"


class Access:
    """A route's guard: the principal must hold one of `scopes` (the one a
    route needs; any scope at all for the caller's own session, `/auth/me`).

    A write whose every scope is a write scope is refused for a suspended
    tenant; reads, administration and a session's own routes are not.
    """

    __slots__ = ("route_class", "scopes")

    def __init__(self, route_class: RouteClass, *scopes: Scope) -> None:
        if not scopes:
            raise ValueError("every guarded route needs a scope")
        self.route_class = route_class
        self.scopes = frozenset(scopes)

    @property
    def refused_when_suspended(self) -> bool:
        return self.route_class.writes and self.scopes <= WRITE_SCOPES

    async def __call__(
        self,
        request: Request,
        resources: ResourcesDep,
        caller: Annotated[Caller, Depends(_authenticated)],
    ) -> Caller:
        await self.admit(request, resources, caller)
        return caller

    async def on_socket(self, websocket: WebSocket) -> Caller | GatewayError:
        """The guard of a WebSocket route, whose credential may also be a
        `token` query parameter: the caller, or the refusal, which the route
        answers in its handshake (an exception would reach no handler)."""
        resources = cast(Resources, websocket.state.resources)
        credential = presented_credential(websocket, query_token=True)
        try:
            caller = await authenticate(websocket, resources, credential)
            await self.admit(websocket, resources, caller)
        except GatewayError as error:
            return error
        return caller

    async def admit(
        self, connection: HTTPConnection, resources: Resources, caller: Caller
    ) -> None:
        """The checks after authentication: scope, rate limit, suspension."""
        principal = caller.principal
        if self.scopes.isdisjoint(principal.scopes):
            raise MissingScopeError(self.scopes)
        settings: Settings = connection.app.state.settings
        connection.state.rate_limit = await admit(
            resources.limiter,
            self.route_class,
            principal.subject,
            quota_for(settings, self.route_class, principal),
        )
        if self.refused_when_suspended:
            await refuse_suspended(resources.suspensions, principal)


@dataclass(frozen=True, slots=True)
class PublicLimit:
    """The rate limit of a public route, per client address."""

    route_class: RouteClass

    async def __call__(self, request: Request, resources: ResourcesDep) -> None:
        settings: Settings = request.app.state.settings
        request.state.rate_limit = await admit(
            resources.limiter,
            self.route_class,
            f"ip:{client_address(request)}",
            quota_for(settings, self.route_class, None),
        )
