"""How to call the `/auth`, JWKS and `/admin` routes, and their own failures."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import httpx

from ..fakes.auth import USER_TENANT
from .env import NO_SUCH_ID, CallerName, Driver, Env, Route

# A user the fake auth service knows, and its password.
EMAIL = "user@example.com"
PASSWORD = "correct horse battery"

Body = Callable[[Env], dict[str, Any]]
Path = Callable[[Env], str]


def _fixed(path: str) -> Path:
    return lambda env: path


def _body_route(
    method: str,
    path: Path,
    body: Body,
    caller: CallerName = "user",
    public: bool = False,
    scenarios: Mapping[str, Sequence[Driver]] | None = None,
) -> Route:
    """A route taking a JSON body: too large is 413, an unknown field 422."""

    async def send(env: Env, headers: Mapping[str, str]) -> httpx.Response:
        return await env.client.request(
            method, path(env), headers=headers, json=body(env)
        )

    async def too_large(env: Env) -> httpx.Response:
        big = {**body(env), "padding": "x" * 5000}
        return await send_as(env, big)

    async def unknown_field(env: Env) -> httpx.Response:
        # Mass assignment: a field the API does not take.
        return await send_as(env, {**body(env), "tenant_id": "another"})

    async def send_as(env: Env, payload: dict[str, Any]) -> httpx.Response:
        return await env.client.request(
            method, path(env), headers=env.headers(caller), json=payload
        )

    own: dict[str, list[Driver]] = {
        "body_too_large": [too_large],
        "invalid_request": [unknown_field],
    }
    for name, drivers in (scenarios or {}).items():
        own.setdefault(name, []).extend(drivers)
    return Route(send, own, public=public, caller=caller)


def _plain_route(
    method: str,
    path: Path,
    caller: CallerName,
    scenarios: Mapping[str, Sequence[Driver]] | None = None,
    public: bool = False,
) -> Route:
    async def send(env: Env, headers: Mapping[str, str]) -> httpx.Response:
        return await env.client.request(method, path(env), headers=headers)

    return Route(send, scenarios or {}, public=public, caller=caller)


def _register_body(env: Env) -> dict[str, Any]:
    return {"email": f"{uuid.uuid4().hex}@example.com", "password": PASSWORD}


async def _sign_in(env: Env, headers: Mapping[str, str]) -> httpx.Response:
    form = {"username": EMAIL, "password": PASSWORD, "grant_type": "password"}
    return await env.client.post("/auth/token", headers=headers, data=form)


async def _sign_in_without_password(env: Env) -> httpx.Response:
    return await env.client.post("/auth/token", data={"username": EMAIL})


async def _sign_in_too_large(env: Env) -> httpx.Response:
    form = {"username": EMAIL, "password": "x" * 5000}
    return await env.client.post("/auth/token", data=form)


def _session(env: Env) -> dict[str, Any]:
    return {"refresh_token": env.auth_service.session(EMAIL)}


def _key_path(prefix: str) -> Path:
    def path(env: Env) -> str:
        return f"{prefix}/{env.auth_service.add_key(USER_TENANT).id}"

    return path


async def _list_keys_badly(env: Env) -> httpx.Response:
    return await env.client.get(
        "/auth/api-keys", headers=env.user, params={"include_inactive": "maybe"}
    )


async def _revoke_unknown_key(env: Env) -> httpx.Response:
    return await env.client.delete(f"/auth/api-keys/{NO_SUCH_ID}", headers=env.user)


async def _bad_page_size(env: Env) -> httpx.Response:
    return await env.client.get(
        "/admin/tenants", headers=env.admin, params={"limit": 0}
    )


async def _zero_quota(env: Env) -> httpx.Response:
    return await env.client.put(
        f"/admin/tenants/{USER_TENANT}/quota",
        headers=env.admin,
        json={"max_queued": 0},
    )


_TENANT = f"/admin/tenants/{USER_TENANT}"

ACCESS_ROUTES: dict[tuple[str, str], Route] = {
    ("POST", "/auth/register"): _body_route(
        "POST", _fixed("/auth/register"), _register_body, "user", public=True
    ),
    ("POST", "/auth/token"): Route(
        _sign_in,
        {
            "invalid_request": [_sign_in_without_password],
            "body_too_large": [_sign_in_too_large],
        },
        public=True,
    ),
    ("POST", "/auth/refresh"): _body_route(
        "POST", _fixed("/auth/refresh"), _session, public=True
    ),
    ("POST", "/auth/logout"): _body_route("POST", _fixed("/auth/logout"), _session),
    ("GET", "/auth/me"): _plain_route("GET", _fixed("/auth/me"), "user"),
    ("POST", "/auth/api-keys"): _body_route(
        "POST",
        _fixed("/auth/api-keys"),
        lambda env: {"name": "ci", "scopes": ["workflows:read"]},
    ),
    ("GET", "/auth/api-keys"): _plain_route(
        "GET",
        _fixed("/auth/api-keys?include_inactive=true"),
        "user",
        {"invalid_request": [_list_keys_badly]},
    ),
    ("DELETE", "/auth/api-keys/{key_id}"): _plain_route(
        "DELETE",
        _key_path("/auth/api-keys"),
        "user",
        {"key_not_found": [_revoke_unknown_key]},
    ),
    ("GET", "/.well-known/jwks.json"): _plain_route(
        "GET", _fixed("/.well-known/jwks.json"), "user", public=True
    ),
    ("GET", "/admin/tenants"): _plain_route(
        "GET",
        _fixed("/admin/tenants"),
        "admin",
        {"invalid_request": [_bad_page_size]},
    ),
    ("POST", "/admin/tenants/{tenant_id}/suspend"): _plain_route(
        "POST", _fixed(f"{_TENANT}/suspend"), "admin"
    ),
    ("POST", "/admin/tenants/{tenant_id}/reinstate"): _plain_route(
        "POST", _fixed(f"{_TENANT}/reinstate"), "admin"
    ),
    ("GET", "/admin/tenants/{tenant_id}/quota"): _plain_route(
        "GET", _fixed(f"{_TENANT}/quota"), "admin"
    ),
    ("PUT", "/admin/tenants/{tenant_id}/quota"): _body_route(
        "PUT",
        _fixed(f"{_TENANT}/quota"),
        lambda env: {"max_queued": 5},
        "admin",
        scenarios={"invalid_request": [_zero_quota]},
    ),
    ("DELETE", "/admin/api-keys/{key_id}"): _plain_route(
        "DELETE", _key_path("/admin/api-keys"), "admin"
    ),
}
