"""Driving a route into an answer: the guard's failures, a backing call's
status injected, and the check that an answer came as documented."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import grpc
import httpx

from comfyserve.gateway.openapi.answers import Answer
from comfyserve.gateway.openapi.body import ErrorBody
from comfyserve.gateway.openapi.responses import RPC_ANSWERS, TRANSPORT_ANSWERS

from .env import Driver, Env, Route

GUARD_ANSWERS = (
    "unauthorized",
    "insufficient_scope",
    "auth_unavailable",
    "bootstrap_key",
    "rate_limited",
    "limits_unavailable",
    "tenant_suspended",
)


def assert_answer(response: httpx.Response, answer: Answer) -> None:
    assert response.status_code == answer.status, response.text
    body = response.json()
    assert body["error"] == answer.code, body
    ErrorBody.model_validate(body)
    # The documented example has exactly the fields the real answer has.
    assert set(body) == set(answer.example()), body
    assert all(value is not None for key, value in body.items() if key != "detected")
    for header in answer.headers:
        assert header in response.headers


def _fakes(env: Env) -> tuple[Any, ...]:
    return (env.workflow, env.storage, env.notifier, env.auth_service)


async def backing_calls(env: Env, route: Route) -> list[str]:
    """The calls a request to the route makes, in order, each once."""
    env.reset()
    response = await route.call(env)
    assert response.status_code < 400, response.text
    return list(dict.fromkeys(call for fake in _fakes(env) for call in fake.calls))


# The reason (google.rpc.ErrorInfo) a service sends with the status it answers.
_REASONS = {"queue_full": "queue_full", "login_throttled": "too_many_attempts"}


def inject(env: Env, method: str, code: grpc.StatusCode, answer: Answer | None) -> None:
    violations = (
        {"cursor": "not valid"} if answer and "fields" in answer.extra else None
    )
    reason = _REASONS.get(answer.name) if answer else None
    error = env.rpc_error(code, "injected", violations, reason=reason)
    [fake] = [fake for fake in _fakes(env) if hasattr(fake, method)]
    fake.failures[method] = error


def guard_drivers(route: Route, name: str) -> list[Driver]:
    """What makes the route's guard (or a public route's limit) give `name`."""

    async def as_(env: Env, headers: Mapping[str, str]) -> httpx.Response:
        return await route.send(env, headers)

    async def exhausted(env: Env) -> httpx.Response:
        env.limiter.exhausted = True
        return await route.call(env)

    async def redis_down(env: Env) -> httpx.Response:
        env.limiter.down = True
        return await route.call(env)

    async def suspended(env: Env) -> httpx.Response:
        env.suspensions.suspended.add(env.tenant_of(route.caller))
        return await route.call(env)

    drivers: dict[str, list[Driver]] = {  # keyed by answer name
        "unauthorized": [
            lambda env: as_(env, {}),
            lambda env: as_(env, {"Authorization": "Bearer not-a-key"}),
        ],
        "insufficient_scope": [lambda env: as_(env, env.no_scopes)],
        "auth_unavailable": [lambda env: as_(env, env.auth_down)],
        "bootstrap_key": [lambda env: as_(env, env.auth)],
        "rate_limited": [exhausted],
        "limits_unavailable": [redis_down],
        "tenant_suspended": [suspended],
    }
    return drivers.get(name, [])


def outcomes(method: str) -> dict[grpc.StatusCode, Answer | None]:
    return {**RPC_ANSWERS[method], **TRANSPORT_ANSWERS}
