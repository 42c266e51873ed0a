"""Every route but health, the docs and the public `/auth` routes needs a
principal holding the route's scope: a walk of the app's route table, so a new
route without a scope fails here."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from fastapi import FastAPI, WebSocket
from fastapi.dependencies.models import Dependant
from fastapi.routing import (
    APIRoute,
    APIWebSocketRoute,
    RouteContext,
    iter_route_contexts,
)
from pydantic import SecretStr

from comfyserve.contracts.scopes import ALL_SCOPES
from comfyserve.gateway.app import create_app
from comfyserve.gateway.auth.dependencies import Access
from comfyserve.gateway.settings import Settings
from comfyserve.runtime.auth import Principal, PrincipalKind

from ..fakes.auth import USER_TENANT

PUBLIC_PATHS = {
    "/health/live",
    "/health/ready",
    "/openapi.json",
    "/docs",
    "/docs/oauth2-redirect",
    "/docs/assets",
    "/redoc",
    "/auth/register",
    "/auth/token",
    "/auth/refresh",
    "/.well-known/jwks.json",
    # Comfy API v2 health: unauthenticated by contract (API.md §A.3).
    "/api/v2/health",
}


def _guards(dependant: Dependant) -> list[Access]:
    # A WebSocket route's guard is the bound `Access.on_socket`.
    owner = getattr(dependant.call, "__self__", dependant.call)
    found = [owner] if isinstance(owner, Access) else []
    return found + [guard for sub in dependant.dependencies for guard in _guards(sub)]


def _routes(app: FastAPI) -> list[RouteContext]:
    return list(iter_route_contexts(app.routes))


def unguarded(app: FastAPI) -> list[str]:
    """Routes outside `PUBLIC_PATHS` that no `Access` with a scope guards."""
    missing = []
    for route in _routes(app):
        if route.path in PUBLIC_PATHS:
            continue
        original = route.original_route
        guards = (
            _guards(original.dependant)
            if isinstance(original, APIRoute | APIWebSocketRoute)
            else []
        )
        if not any(guard.scopes for guard in guards):
            missing.append(route.path)
    return missing


def _guarded_routes() -> list[tuple[str, str, Access]]:
    app = create_app(Settings(api_keys=[SecretStr("k")]))
    found = []
    for route in _routes(app):
        original = route.original_route
        if route.path in PUBLIC_PATHS or not isinstance(original, APIRoute):
            continue
        [guard] = _guards(original.dependant)
        found += [(method, route.path, guard) for method in sorted(route.methods)]
    return found


GUARDED = _guarded_routes()


def _error(body: dict[str, Any]) -> tuple[str, str, dict[str, Any]]:
    """Code, text and extra fields of our REST body or of the v2 envelope."""
    if isinstance(body["error"], dict):
        error = body["error"]
        return error["code"], error["message"], error["details"] or {}
    return body["error"], body["detail"], body


def _url(path: str) -> str:
    """The path with an id of nothing for each parameter."""
    return "/".join(
        str(uuid.uuid4()) if part.startswith("{") else part for part in path.split("/")
    )


def test_every_route_but_the_public_ones_is_guarded_by_a_scope(app):
    assert unguarded(app) == []
    # The walk sees what it must: every documented route, /auth and /admin too.
    paths = {path for _, path, _ in GUARDED}
    assert {"/workflows/execute", "/files", "/auth/api-keys", "/admin/tenants"} <= paths


def test_a_new_route_without_a_scope_fails_the_walk(app):
    @app.get("/reports")
    async def reports() -> dict[str, str]:
        return {}

    assert unguarded(app) == ["/reports"]


def test_a_websocket_route_without_a_scope_fails_the_walk(app):
    @app.websocket("/feed")
    async def feed(websocket: WebSocket) -> None:
        await websocket.close()

    assert unguarded(app) == ["/feed"]


@pytest.mark.parametrize(
    ("method", "path", "guard"), GUARDED, ids=[f"{m} {p}" for m, p, _ in GUARDED]
)
async def test_no_credential_is_401_and_calls_nothing(
    client, workflow, storage, auth, method, path, guard
):
    response = await client.request(method, _url(path))

    assert response.status_code == 401
    if method != "HEAD":  # a HEAD answer has no body
        assert _error(response.json())[0] == "unauthorized"
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert workflow.calls == storage.calls == auth.calls == []


@pytest.mark.parametrize(
    ("method", "path", "guard"), GUARDED, ids=[f"{m} {p}" for m, p, _ in GUARDED]
)
async def test_a_principal_without_the_scope_is_403_naming_it(
    client, principals, workflow, storage, auth, method, path, guard
):
    # Every scope but those the route takes.
    credential = f"csk_{uuid.uuid4().hex}"
    principals[credential] = Principal(
        kind=PrincipalKind.API_KEY,
        subject=f"key:{credential}",
        tenant_id=USER_TENANT,
        scopes=frozenset(ALL_SCOPES - guard.scopes),
    )

    response = await client.request(
        method, _url(path), headers={"Authorization": f"Bearer {credential}"}
    )

    assert response.status_code == 403
    if method != "HEAD":  # a HEAD answer has no body
        code, detail, extra = _error(response.json())
        v2 = path.startswith("/api/v2/")
        assert code == ("forbidden" if v2 else "insufficient_scope")
        assert extra["required_scopes"] == sorted(guard.scopes)
        assert all(scope in detail for scope in guard.scopes)
    assert workflow.calls == storage.calls == auth.calls == []
