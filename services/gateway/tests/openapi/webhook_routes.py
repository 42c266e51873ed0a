"""How to call the webhook routes, and their own failures."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import httpx

from .env import NO_SUCH_ID, Driver, Env, Route, Send

_ENDPOINT = "/webhooks/endpoints/{id}"


def _endpoint_route(
    method: str, suffix: str = "", body: dict[str, object] | None = None
) -> Route:
    async def send(env: Env, headers: Mapping[str, str]) -> httpx.Response:
        path = _ENDPOINT.format(id=env.endpoint_id) + suffix
        return await env.client.request(method, path, headers=headers, json=body)

    async def not_an_id(env: Env) -> httpx.Response:
        path = _ENDPOINT.format(id="not-an-endpoint") + suffix
        return await env.client.request(method, path, headers=env.auth, json=body)

    return Route(send, {"endpoint_not_found": [not_an_id]})


async def _delete(env: Env, headers: Mapping[str, str]) -> httpx.Response:
    # Its own endpoint each time: the route is called again after each reset.
    created = env.notifier.add_endpoint(env.tenant)
    path = _ENDPOINT.format(id=created.id)
    return await env.client.delete(path, headers=headers)


async def _create(env: Env, headers: Mapping[str, str]) -> httpx.Response:
    body = {"url": "https://hooks.example/new", "event_types": ["job.completed"]}
    return await env.client.post("/webhooks/endpoints", headers=headers, json=body)


def _body_scenarios() -> dict[str, Sequence[Driver]]:
    async def too_large(env: Env) -> httpx.Response:
        body = {"url": "https://hooks.example/x", "description": "x" * 5000}
        return await env.client.post("/webhooks/endpoints", headers=env.auth, json=body)

    async def invalid(env: Env) -> httpx.Response:
        body = {"url": "ftp://hooks.example/x", "event_types": ["webhook.test"]}
        return await env.client.post("/webhooks/endpoints", headers=env.auth, json=body)

    return {"body_too_large": [too_large], "invalid_request": [invalid]}


def _patch_scenarios() -> dict[str, Sequence[Driver]]:
    def path(env: Env) -> str:
        return _ENDPOINT.format(id=env.endpoint_id)

    async def too_large(env: Env) -> httpx.Response:
        body = {"description": "x" * 5000}
        return await env.client.patch(path(env), headers=env.auth, json=body)

    async def invalid(env: Env) -> httpx.Response:
        body = {"enabled": "maybe", "secret": "mine"}
        return await env.client.patch(path(env), headers=env.auth, json=body)

    return {"body_too_large": [too_large], "invalid_request": [invalid]}


def _get(path: str) -> Send:
    async def send(env: Env, headers: Mapping[str, str]) -> httpx.Response:
        return await env.client.get(path, headers=headers)

    return send


def _post(path: str) -> Send:
    async def send(env: Env, headers: Mapping[str, str]) -> httpx.Response:
        return await env.client.post(path, headers=headers)

    return send


def _bad_page(path: str) -> Driver:
    async def drive(env: Env) -> httpx.Response:
        params = {"limit": 0, "status": "lost", "endpoint": "not-an-id"}
        return await env.client.get(path, headers=env.auth, params=params)

    return drive


def _delivery_route(method: str, suffix: str = "") -> Route:
    async def send(env: Env, headers: Mapping[str, str]) -> httpx.Response:
        path = f"/webhooks/deliveries/{env.delivery_id}{suffix}"
        return await env.client.request(method, path, headers=headers)

    async def too_long(env: Env) -> httpx.Response:
        path = f"/webhooks/deliveries/{'d' * 201}{suffix}"
        return await env.client.request(method, path, headers=env.auth)

    return Route(send, {"invalid_request": [too_long]})


async def _job_deliveries(env: Env, headers: Mapping[str, str]) -> httpx.Response:
    return await env.client.get(f"/workflows/{env.job_id}/deliveries", headers=headers)


async def _unknown_job(env: Env) -> httpx.Response:
    path = f"/workflows/{NO_SUCH_ID}/deliveries"
    return await env.client.get(path, headers=env.auth)


async def _bad_job_page(env: Env) -> httpx.Response:
    path = f"/workflows/{env.job_id}/deliveries"
    return await env.client.get(path, headers=env.auth, params={"limit": 1000})


WEBHOOK_ROUTES: dict[tuple[str, str], Route] = {
    ("POST", "/webhooks/endpoints"): Route(_create, _body_scenarios()),
    ("GET", "/webhooks/endpoints"): Route(
        _get("/webhooks/endpoints"),
        {"invalid_request": [_bad_page("/webhooks/endpoints")]},
    ),
    ("GET", "/webhooks/endpoints/{endpoint_id}"): _endpoint_route("GET"),
    ("PATCH", "/webhooks/endpoints/{endpoint_id}"): Route(
        _endpoint_route("PATCH", body={"enabled": False}).send,
        {
            **_endpoint_route("PATCH", body={"enabled": False}).scenarios,
            **_patch_scenarios(),
        },
    ),
    ("DELETE", "/webhooks/endpoints/{endpoint_id}"): Route(
        _delete, _endpoint_route("DELETE").scenarios
    ),
    ("POST", "/webhooks/endpoints/{endpoint_id}/test"): _endpoint_route(
        "POST", "/test"
    ),
    ("POST", "/webhooks/endpoints/{endpoint_id}/secret/rotate"): _endpoint_route(
        "POST", "/secret/rotate"
    ),
    ("GET", "/webhooks/secret"): Route(_get("/webhooks/secret")),
    ("POST", "/webhooks/secret/rotate"): Route(_post("/webhooks/secret/rotate")),
    ("GET", "/webhooks/deliveries"): Route(
        _get("/webhooks/deliveries"),
        {"invalid_request": [_bad_page("/webhooks/deliveries")]},
    ),
    ("GET", "/webhooks/deliveries/{delivery_id}"): _delivery_route("GET"),
    ("POST", "/webhooks/deliveries/{delivery_id}/replay"): _delivery_route(
        "POST", "/replay"
    ),
    ("GET", "/workflows/{execution_id}/deliveries"): Route(
        _job_deliveries,
        {"job_not_found": [_unknown_job], "invalid_request": [_bad_job_page]},
    ),
}
