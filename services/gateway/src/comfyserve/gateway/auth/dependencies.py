"""FastAPI dependencies that turn the Authorization header into a principal."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from comfyserve.gateway.auth.principal import Principal, Scope
from comfyserve.gateway.errors import ForbiddenError, UnauthorizedError
from comfyserve.gateway.resources import ResourcesDep

_bearer = HTTPBearer(auto_error=False, description="An API key as a bearer token")


async def _current_principal(
    request: Request,
    resources: ResourcesDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    if credentials is None or not credentials.credentials:
        raise UnauthorizedError()
    principal = await resources.authenticator.authenticate(credentials.credentials)
    if principal is None:
        raise UnauthorizedError("The bearer token is not valid")
    request.state.tenant_id = principal.tenant_id
    return principal


CurrentPrincipal = Annotated[Principal, Depends(_current_principal)]


def require_scope(scope: Scope) -> Callable[[Principal], Awaitable[Principal]]:
    """A dependency answering 403 unless the principal holds `scope`."""

    async def _check(principal: CurrentPrincipal) -> Principal:
        if scope not in principal.scopes:
            raise ForbiddenError(f"This credential lacks the scope {scope.value!r}")
        return principal

    return _check
