"""The OpenAPI document tells the truth about every route's errors.

Each route's documented errors are driven through the fakes and must come as
documented; every status a backing call can answer is injected into each call
the route makes, and what the route then says must be documented.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import grpc
import pytest
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, RouteContext, iter_route_contexts
from pydantic import SecretStr

from comfyserve.gateway.app import create_app
from comfyserve.gateway.auth.dependencies import Access, PublicLimit
from comfyserve.gateway.errors import GatewayError
from comfyserve.gateway.handlers import rpc_error_response
from comfyserve.gateway.openapi.answers import Answer
from comfyserve.gateway.openapi.body import ErrorBody
from comfyserve.gateway.openapi.responses import (
    ANSWERS,
    RPC_ANSWERS,
)
from comfyserve.gateway.settings import Settings

from .access_routes import ACCESS_ROUTES
from .drive import (
    GUARD_ANSWERS,
    assert_answer,
    backing_calls,
    guard_drivers,
    inject,
    outcomes,
)
from .env import Route
from .job_routes import JOB_ROUTES
from .webhook_routes import WEBHOOK_ROUTES

ROUTES: dict[tuple[str, str], Route] = {**JOB_ROUTES, **ACCESS_ROUTES, **WEBHOOK_ROUTES}

# Routes outside the document: the docs themselves.
UNDOCUMENTED = {
    "/openapi.json",
    "/docs",
    "/docs/oauth2-redirect",
    "/docs/assets",
    "/redoc",
}


def _document() -> dict[str, Any]:
    return create_app(Settings(api_keys=[SecretStr("k")])).openapi()


def _documented(operation: Mapping[str, Any]) -> list[Answer]:
    """The answers named by an operation's error examples."""
    found = []
    for status, response in operation["responses"].items():
        if int(status) >= 400:
            examples = response["content"]["application/json"]["examples"]
            found += [ANSWERS[name] for name in examples]
    return found


_OPERATIONS = {
    (method.upper(), path): operation
    for path, operations in _document()["paths"].items()
    for method, operation in operations.items()
}
_CASES = [
    pytest.param(route, answer, id=f"{route[0]} {route[1]} {answer.name}")
    for route, operation in _OPERATIONS.items()
    for answer in _documented(operation)
]


def _routes(app) -> list[RouteContext]:
    """The app's route table, routes of included routers with their prefix."""
    return list(iter_route_contexts(app.routes))


def _in_schema(route: RouteContext) -> bool:
    return isinstance(route.original_route, APIRoute) and route.include_in_schema


def _native(route: RouteContext) -> bool:
    endpoint = getattr(route.original_route, "endpoint", None)
    module = getattr(endpoint, "__module__", "")
    return module.startswith("comfyserve.gateway.native.")


def test_every_route_is_in_the_table(app):
    routes = _routes(app)
    documented = {
        (method, route.path)
        for route in routes
        if _in_schema(route)
        for method in route.methods or ()
    }
    # The Comfy API v2 routes are documented by their own contract (API.md).
    hidden = {
        route.path
        for route in routes
        if not _in_schema(route) and not route.path.startswith("/api/v2/")
    }
    # So are ComfyUI's native routes (API.md Part B), wherever they are mounted.
    hidden -= {route.path for route in routes if _native(route)}

    assert documented == set(ROUTES) == set(_OPERATIONS)
    assert hidden == UNDOCUMENTED


def test_every_error_response_is_the_error_body_with_its_examples():
    document = _document()
    text = json.dumps(document)

    assert "HTTPValidationError" not in text
    assert "${" not in text
    for key, operation in _OPERATIONS.items():
        assert operation.get("summary"), key
        assert operation.get("description"), key
        for status, response in operation["responses"].items():
            if int(status) < 400:
                continue
            assert response["description"], (key, status)
            content = response["content"]["application/json"]
            assert content["schema"] == {"$ref": "#/components/schemas/ErrorBody"}
            assert content["examples"], (key, status)
            for name, example in content["examples"].items():
                answer = ANSWERS[name]
                assert answer.status == int(status), (key, name)
                assert example["value"]["error"] == answer.code
                ErrorBody.model_validate(example["value"])


def test_the_limits_in_force_are_stated(app, settings):
    document = app.openapi()
    paths = document["paths"]
    execute = paths["/workflows/execute"]["post"]
    upload = paths["/files"]["post"]

    assert str(settings.max_body_bytes) in execute["description"]
    example = execute["responses"]["413"]["content"]["application/json"]["examples"]
    assert example["body_too_large"]["value"]["limit_bytes"] == settings.max_body_bytes
    assert str(settings.max_upload_bytes) in upload["description"]
    assert "16 `metadata` entries" in execute["description"]
    assert "0.05 to 60" in execute["description"]
    assert "1 to 100" in paths["/workflows"]["get"]["description"]
    assert str(settings.max_header_bytes) in document["info"]["description"]


@pytest.mark.parametrize(("route_key", "answer"), _CASES)
async def test_every_documented_error_is_produced(env, route_key, answer):
    route = ROUTES[route_key]
    drivers = [
        *route.scenarios.get(answer.name, ()),
        *guard_drivers(route, answer.name),
    ]
    injected = [
        (method, code)
        for method in await backing_calls(env, route)
        for code, outcome in outcomes(method).items()
        if outcome == answer
    ]
    assert drivers or injected, f"nothing makes {route_key} answer {answer.name}"

    for drive in drivers:
        env.reset()
        assert_answer(await drive(env), answer)
    for method, code in injected:
        env.reset()
        inject(env, method, code, answer)
        assert_answer(await route.call(env), answer)


@pytest.mark.parametrize("route_key", list(ROUTES), ids=" ".join)
async def test_every_answer_of_a_backing_call_is_documented(env, route_key):
    route = ROUTES[route_key]
    documented = {(a.status, a.code) for a in _documented(_OPERATIONS[route_key])}

    for method in await backing_calls(env, route):
        assert method in RPC_ANSWERS, f"{method} has no entry in RPC_ANSWERS"
        for code, answer in outcomes(method).items():
            env.reset()
            inject(env, method, code, answer)
            response = await route.call(env)
            if answer is None:
                assert response.status_code < 400, (method, code, response.text)
                continue
            got = (response.status_code, response.json()["error"])
            assert got == (answer.status, answer.code), (method, code)
            assert got in documented, f"{route_key} {method} {code} gives {got}"


@pytest.mark.parametrize("route_key", list(ROUTES), ids=" ".join)
async def test_every_answer_of_the_guard_is_documented(env, route_key):
    route = ROUTES[route_key]
    documented = {(a.status, a.code) for a in _documented(_OPERATIONS[route_key])}

    for name in GUARD_ANSWERS:
        for drive in guard_drivers(route, name):
            env.reset()
            response = await drive(env)
            if response.status_code >= 400:
                got = (response.status_code, response.json()["error"])
                assert got in documented, f"{route_key} {name} gives {got}"


def _dependencies(dependant: Dependant) -> list[Dependant]:
    return [
        dependant,
        *(found for sub in dependant.dependencies for found in _dependencies(sub)),
    ]


@pytest.mark.parametrize("route_key", list(ROUTES), ids=" ".join)
def test_what_a_routes_dependencies_can_raise_is_documented(app, route_key):
    method, path = route_key
    [route] = [
        r
        for r in _routes(app)
        if _in_schema(r) and r.path == path and method in (r.methods or ())
    ]
    names = {a.name for a in _documented(_OPERATIONS[route_key])}
    dependencies = _dependencies(route.dependant)
    calls = [dep.call for dep in dependencies]
    query = [param for dep in dependencies for param in dep.query_params]
    body = [param for dep in dependencies for param in dep.body_params]

    guarded = any(isinstance(call, Access) for call in calls)
    limited = any(isinstance(call, PublicLimit) for call in calls)
    assert guarded == ("unauthorized" in names) == (not ROUTES[route_key].public)
    assert guarded == ("insufficient_scope" in names)
    if guarded or limited:
        assert "rate_limited" in names
    if query or body:
        assert "invalid_request" in names
    if body:
        assert "body_too_large" in names


@pytest.mark.parametrize("route_key", list(ROUTES), ids=" ".join)
def test_every_failure_the_table_drives_is_documented(route_key):
    names = {answer.name for answer in _documented(_OPERATIONS[route_key])}

    assert set(ROUTES[route_key].scenarios) <= names


def _error_classes(cls: type[GatewayError]) -> list[type[GatewayError]]:
    return [
        cls,
        *(found for sub in cls.__subclasses__() for found in _error_classes(sub)),
    ]


def test_every_error_the_gateway_raises_or_maps_has_an_answer(rpc_error):
    answers = {(answer.status, answer.code) for answer in ANSWERS.values()}
    raised = {
        (cls.status_code, cls.code)
        for cls in _error_classes(GatewayError)
        # The Comfy API v2 is documented by its own contract, not this one.
        if not cls.__module__.startswith("comfyserve.gateway.v2.")
    }
    mapped = set()
    for code in grpc.StatusCode:
        if code == grpc.StatusCode.OK:
            continue
        for violations in (None, {"field": "why"}):
            response = rpc_error_response(rpc_error(code, "x", violations))
            mapped.add((response.status_code, json.loads(response.body)["error"]))

    assert raised <= answers
    assert mapped <= answers
