"""The OpenAPI document tells the truth about every route's errors.

Each route's documented errors are driven through the fakes and must come as
documented; every status a backing call can answer is injected into each call
the route makes, and what the route then says must be documented.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc
import httpx
import pytest
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, RouteContext, iter_route_contexts
from pydantic import SecretStr

from comfyserve.contracts.pb.storage.v1 import storage_pb2 as st
from comfyserve.contracts.pb.workflow.v1 import workflow_pb2 as wf
from comfyserve.gateway.app import create_app
from comfyserve.gateway.auth.dependencies import _current_principal
from comfyserve.gateway.errors import GatewayError, rpc_error_response
from comfyserve.gateway.openapi.answers import ANSWERS, Answer
from comfyserve.gateway.openapi.body import ErrorBody
from comfyserve.gateway.openapi.responses import RPC_ANSWERS, TRANSPORT_ANSWERS
from comfyserve.gateway.settings import Settings

NO_SUCH_ID = "00000000-0000-4000-8000-000000000000"


@dataclass
class Env:
    """The app's client, the fakes behind it, and a job and a file of tenant A."""

    client: httpx.AsyncClient
    workflow: Any
    storage: Any
    object_store: Any
    probes: list[Any]
    rpc_error: Callable[..., grpc.aio.AioRpcError]
    auth: dict[str, str]
    no_scopes: dict[str, str]
    tenant: str
    job_id: str
    file_id: str

    def reset(self) -> None:
        for fake in (self.workflow, self.storage):
            fake.failures.clear()
            fake.calls.clear()
        self.workflow.validation_errors = None
        self.object_store.refuse = False
        for probe in self.probes:
            probe.healthy = True


Send = Callable[[Env, Mapping[str, str]], Awaitable[httpx.Response]]
Driver = Callable[[Env], Awaitable[httpx.Response]]


@dataclass(frozen=True)
class Route:
    """How to call a route as it should be called, and its own failures."""

    send: Send
    # Answer name → requests that must get that answer (besides those injected
    # into the backing calls).
    scenarios: Mapping[str, Sequence[Driver]] = field(default_factory=dict)
    public: bool = False


def _graph() -> dict[str, object]:
    return {"1": {"class_type": "EmptyImage", "inputs": {"width": 64}}}


def _validation_errors(kind: str) -> wf.ValidationErrors:
    return wf.ValidationErrors(
        error=wf.ErrorItem(type=kind, message="Prompt outputs failed validation"),
        node_errors={
            "1": wf.NodeError(
                errors=[
                    wf.ErrorItem(
                        type="value_not_in_list",
                        message="Value not in list",
                        details="width",
                        extra_info_json='{"input_name": "width"}',
                    )
                ],
                dependent_outputs=["1"],
                class_type="EmptyImage",
            )
        },
    )


def _refused_graph(kind: str, path: str) -> Driver:
    async def drive(env: Env) -> httpx.Response:
        env.workflow.validation_errors = _validation_errors(kind)
        return await env.client.post(
            path, headers=env.auth, json={"workflow": _graph()}
        )

    return drive


def _json_route(path: str) -> tuple[Send, dict[str, Sequence[Driver]]]:
    async def send(env: Env, headers: Mapping[str, str]) -> httpx.Response:
        return await env.client.post(path, headers=headers, json={"workflow": _graph()})

    async def too_large(env: Env) -> httpx.Response:
        big = {"workflow": {"1": {"class_type": "x" * 5000}}}
        return await env.client.post(path, headers=env.auth, json=big)

    async def chunked_too_large(env: Env) -> httpx.Response:
        async def body():
            for _ in range(5):
                yield b" " * 1000

        headers = {**env.auth, "Content-Type": "application/json"}
        return await env.client.post(path, headers=headers, content=body())

    async def invalid(env: Env) -> httpx.Response:
        return await env.client.post(path, headers=env.auth, json={"workflow": []})

    async def not_json(env: Env) -> httpx.Response:
        headers = {**env.auth, "Content-Type": "application/json"}
        return await env.client.post(path, headers=headers, content=b"{")

    return send, {
        "body_too_large": [too_large, chunked_too_large],
        "invalid_request": [invalid, not_json],
        "invalid_workflow": [_refused_graph("prompt_outputs_failed_validation", path)],
        "workflow_format_ui": [_refused_graph("workflow_format_ui", path)],
    }


_execute, _execute_scenarios = _json_route("/workflows/execute")
_validate, _validate_scenarios = _json_route("/workflows/validate")


async def _bad_idempotency_key(env: Env) -> httpx.Response:
    headers = {**env.auth, "Idempotency-Key": "k" * 256}
    return await env.client.post(
        "/workflows/execute", headers=headers, json={"workflow": _graph()}
    )


async def _list(env: Env, headers: Mapping[str, str]) -> httpx.Response:
    return await env.client.get("/workflows", headers=headers)


async def _bad_list_parameters(env: Env) -> httpx.Response:
    return await env.client.get(
        "/workflows", headers=env.auth, params={"limit": 0, "status": "expired"}
    )


def _job_route(method: str, suffix: str = "") -> Route:
    async def send(env: Env, headers: Mapping[str, str]) -> httpx.Response:
        path = f"/workflows/{env.job_id}{suffix}"
        return await env.client.request(method, path, headers=headers)

    async def unknown(env: Env) -> httpx.Response:
        path = f"/workflows/{NO_SUCH_ID}{suffix}"
        return await env.client.request(method, path, headers=env.auth)

    async def not_an_id(env: Env) -> httpx.Response:
        path = f"/workflows/not-a-job{suffix}"
        return await env.client.request(method, path, headers=env.auth)

    return Route(send, {"job_not_found": [unknown, not_an_id]})


async def _events(env: Env, headers: Mapping[str, str]) -> httpx.Response:
    # A pending job: its stream is one status, and no output to presign.
    job = env.workflow.add_job(env.tenant)
    return await env.client.get(f"/workflows/{job.id}/events", headers=headers)


async def _upload_file(
    env: Env,
    headers: Mapping[str, str],
    content: bytes = b"hello",
    name: str = "a.txt",
    content_type: str = "text/plain",
    data: dict[str, str] | None = None,
) -> httpx.Response:
    return await env.client.post(
        "/files",
        headers=headers,
        files={"file": (name, content, content_type)},
        data=data,
    )


async def _upload(env: Env, headers: Mapping[str, str]) -> httpx.Response:
    return await _upload_file(env, headers)


async def _malformed_content_type(env: Env) -> httpx.Response:
    return await _upload_file(env, env.auth, data={"content_type": "not a type"})


async def _two_files(env: Env) -> httpx.Response:
    return await env.client.post(
        "/files",
        headers=env.auth,
        files=[("file", ("a.txt", b"a")), ("file", ("b.txt", b"b"))],
    )


async def _multipart_too_large(env: Env) -> httpx.Response:
    return await _upload_file(env, env.auth, b"x" * (320 * 1024 + 1))


async def _file_too_large(env: Env) -> httpx.Response:
    return await _upload_file(env, env.auth, b"x" * (256 * 1024 + 1))


async def _no_file_part(env: Env) -> httpx.Response:
    return await env.client.post(
        "/files", headers=env.auth, data={"content_type": "text/plain"}
    )


async def _empty_file(env: Env) -> httpx.Response:
    return await _upload_file(env, env.auth, b"")


async def _not_a_png(env: Env) -> httpx.Response:
    return await _upload_file(
        env, env.auth, b"GIF89a" + b"\0" * 20, "a.png", "image/png"
    )


async def _refused_by_the_object_store(env: Env) -> httpx.Response:
    env.object_store.refuse = True
    return await _upload_file(env, env.auth)


def _file_route(suffix: str = "") -> Route:
    async def send(env: Env, headers: Mapping[str, str]) -> httpx.Response:
        return await env.client.get(f"/files/{env.file_id}{suffix}", headers=headers)

    async def unknown(env: Env) -> httpx.Response:
        return await env.client.get(f"/files/{NO_SUCH_ID}{suffix}", headers=env.auth)

    async def not_an_id(env: Env) -> httpx.Response:
        return await env.client.get(f"/files/not-a-file{suffix}", headers=env.auth)

    return Route(send, {"file_not_found": [unknown, not_an_id]})


async def _pending_file_content(env: Env) -> httpx.Response:
    pending = env.storage.add_file(env.tenant, state=st.FILE_STATE_PENDING)
    return await env.client.get(f"/files/{pending.id}/content", headers=env.auth)


async def _live(env: Env, headers: Mapping[str, str]) -> httpx.Response:
    return await env.client.get("/health/live")


async def _ready(env: Env, headers: Mapping[str, str]) -> httpx.Response:
    return await env.client.get("/health/ready")


async def _redis_down(env: Env) -> httpx.Response:
    env.probes[2].healthy = False
    return await env.client.get("/health/ready")


_content = _file_route("/content")

ROUTES: dict[tuple[str, str], Route] = {
    ("POST", "/workflows/execute"): Route(
        _execute,
        {**_execute_scenarios, "invalid_idempotency_key": [_bad_idempotency_key]},
    ),
    ("POST", "/workflows/validate"): Route(_validate, _validate_scenarios),
    ("GET", "/workflows"): Route(_list, {"invalid_request": [_bad_list_parameters]}),
    ("GET", "/workflows/{execution_id}"): _job_route("GET"),
    ("POST", "/workflows/{execution_id}/cancel"): _job_route("POST", "/cancel"),
    ("GET", "/workflows/{execution_id}/events"): Route(
        _events, _job_route("GET", "/events").scenarios
    ),
    ("POST", "/files"): Route(
        _upload,
        {
            "malformed_upload": [_malformed_content_type, _two_files],
            "multipart_too_large": [_multipart_too_large],
            "file_too_large": [_file_too_large],
            "no_file_part": [_no_file_part],
            "empty_file": [_empty_file],
            "content_type_mismatch": [_not_a_png],
            "upload_failed": [_refused_by_the_object_store],
        },
    ),
    ("GET", "/files/{file_id}"): _file_route(),
    ("GET", "/files/{file_id}/content"): Route(
        _content.send,
        {**_content.scenarios, "file_not_ready": [_pending_file_content]},
    ),
    ("GET", "/health/live"): Route(_live, public=True),
    ("GET", "/health/ready"): Route(_ready, {"not_ready": [_redis_down]}, public=True),
}

# Routes outside the document: the docs themselves and Prometheus' scrape.
UNDOCUMENTED = {
    "/openapi.json",
    "/docs",
    "/docs/oauth2-redirect",
    "/docs/assets",
    "/redoc",
    "/metrics",
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


@pytest.fixture
async def env(
    client,
    workflow,
    storage,
    object_store,
    probes,
    rpc_error,
    auth_a,
    auth_no_scopes,
    tenant_a,
) -> Env:
    stored = storage.add_file(tenant_a, filename="a.png", key="outputs/a.png")
    job = workflow.add_job(
        tenant_a,
        status=wf.JOB_STATUS_COMPLETED,
        outputs=[wf.OutputFile(file_id=stored.id, node_id="9", filename="a.png")],
    )
    return Env(
        client=client,
        workflow=workflow,
        storage=storage,
        object_store=object_store,
        probes=probes,
        rpc_error=rpc_error,
        auth=auth_a,
        no_scopes=auth_no_scopes,
        tenant=tenant_a,
        job_id=job.id,
        file_id=stored.id,
    )


def _assert_answer(response: httpx.Response, answer: Answer) -> None:
    assert response.status_code == answer.status, response.text
    body = response.json()
    assert body["error"] == answer.code, body
    ErrorBody.model_validate(body)
    # The documented example has exactly the fields the real answer has.
    assert set(body) == set(answer.example()), body
    assert all(value is not None for key, value in body.items() if key != "detected")
    for header in answer.headers:
        assert header in response.headers


async def _backing_calls(env: Env, route: Route) -> list[str]:
    """The calls a request to the route makes, in order, each once."""
    env.reset()
    response = await route.send(env, env.auth)
    assert response.status_code < 400, response.text
    return list(dict.fromkeys([*env.workflow.calls, *env.storage.calls]))


def _inject(
    env: Env, method: str, code: grpc.StatusCode, answer: Answer | None
) -> None:
    violations = (
        {"cursor": "not valid"} if answer and "fields" in answer.extra else None
    )
    error = env.rpc_error(code, "injected", violations)
    fake = env.workflow if hasattr(env.workflow, method) else env.storage
    fake.failures[method] = error


def _outcomes(method: str) -> dict[grpc.StatusCode, Answer | None]:
    return {**RPC_ANSWERS[method], **TRANSPORT_ANSWERS}


def _routes(app) -> list[RouteContext]:
    """The app's route table, routes of included routers with their prefix."""
    return list(iter_route_contexts(app.routes))


def _in_schema(route: RouteContext) -> bool:
    return isinstance(route.original_route, APIRoute) and route.include_in_schema


def test_every_route_is_in_the_table(app):
    routes = _routes(app)
    documented = {
        (method, route.path)
        for route in routes
        if _in_schema(route)
        for method in route.methods or ()
    }
    hidden = {route.path for route in routes if not _in_schema(route)}

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
    drivers = list(route.scenarios.get(answer.name, ()))
    if answer.name == "unauthorized":
        drivers += [
            lambda env: route.send(env, {}),
            lambda env: route.send(env, {"Authorization": "Bearer not-a-key"}),
        ]
    if answer.name == "insufficient_scope":
        drivers.append(lambda env: route.send(env, env.no_scopes))
    injected = [
        (method, code)
        for method in await _backing_calls(env, route)
        for code, outcome in _outcomes(method).items()
        if outcome == answer
    ]
    assert drivers or injected, f"nothing makes {route_key} answer {answer.name}"

    for drive in drivers:
        env.reset()
        _assert_answer(await drive(env), answer)
    for method, code in injected:
        env.reset()
        _inject(env, method, code, answer)
        _assert_answer(await route.send(env, env.auth), answer)


@pytest.mark.parametrize("route_key", list(ROUTES), ids=" ".join)
async def test_every_answer_of_a_backing_call_is_documented(env, route_key):
    route = ROUTES[route_key]
    documented = {(a.status, a.code) for a in _documented(_OPERATIONS[route_key])}

    for method in await _backing_calls(env, route):
        assert method in RPC_ANSWERS, f"{method} has no entry in RPC_ANSWERS"
        for code, answer in _outcomes(method).items():
            env.reset()
            _inject(env, method, code, answer)
            response = await route.send(env, env.auth)
            if answer is None:
                assert response.status_code < 400, (method, code, response.text)
                continue
            got = (response.status_code, response.json()["error"])
            assert got == (answer.status, answer.code), (method, code)
            assert got in documented, f"{route_key} {method} {code} gives {got}"


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

    needs_principal = _current_principal in calls
    assert (
        needs_principal == ("unauthorized" in names) == (not ROUTES[route_key].public)
    )
    scoped = any("require_scope" in getattr(c, "__qualname__", "") for c in calls)
    assert scoped == ("insufficient_scope" in names)
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
    raised = {(cls.status_code, cls.code) for cls in _error_classes(GatewayError)}
    mapped = set()
    for code in grpc.StatusCode:
        if code == grpc.StatusCode.OK:
            continue
        for violations in (None, {"field": "why"}):
            response = rpc_error_response(rpc_error(code, "x", violations))
            mapped.add((response.status_code, json.loads(response.body)["error"]))

    assert raised <= answers
    assert mapped <= answers
