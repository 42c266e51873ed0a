"""Mass assignment: every JSON body the app takes refuses fields it does not know,
nested objects included."""

from __future__ import annotations

import typing

import pytest
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, iter_route_contexts
from pydantic import BaseModel, SecretStr

from comfyserve.gateway.app import create_app
from comfyserve.gateway.settings import Settings


def _dependants(dependant: Dependant) -> list[Dependant]:
    return [dependant, *(d for sub in dependant.dependencies for d in _dependants(sub))]


def _models(annotation: object) -> list[type[BaseModel]]:
    """The models an annotation holds, and theirs, however deep."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        inner = [
            model
            for info in annotation.model_fields.values()
            for model in _models(info.annotation)
        ]
        return [annotation, *inner]
    return [model for arg in typing.get_args(annotation) for model in _models(arg)]


def _bodies() -> dict[str, type[BaseModel]]:
    app = create_app(Settings(api_keys=[SecretStr("k")]))
    found = {}
    for context in iter_route_contexts(app.routes):
        route = context.original_route
        if not isinstance(route, APIRoute):
            continue
        for dependant in _dependants(route.dependant):
            for param in dependant.body_params:
                for model in _models(param.field_info.annotation):
                    found[
                        f"{sorted(route.methods)[0]} {context.path} {model.__name__}"
                    ] = model
    return found


BODIES = _bodies()


def test_the_walk_finds_the_bodies():
    names = {name.rsplit(" ", 1)[1] for name in BODIES}
    assert {
        "ExecuteRequest",
        "RegisterRequest",
        "CreateApiKeyRequest",
        "RateLimit",
        "QuotaRequest",
    } <= names


@pytest.mark.parametrize("name", list(BODIES))
def test_every_body_forbids_unknown_fields(name):
    assert BODIES[name].model_config.get("extra") == "forbid"


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/workflows/execute", {"workflow": {"1": {"inputs": {"text": "a\x00b"}}}}),
        ("/workflows/execute", {"workflow": {}, "metadata": {"k\x00": "v"}}),
        ("/auth/register", {"email": "a\x00@example.com", "password": "x" * 12}),
    ],
    ids=["nested_graph_value", "metadata_key", "register_email"],
)
async def test_a_nul_anywhere_in_a_body_is_422_naming_where(
    client, auth_a, path, body
) -> None:
    answer = await client.post(path, json=body, headers=auth_a)

    assert answer.status_code == 422, answer.text
    assert "NUL" in answer.text


async def test_a_nul_in_the_sign_in_form_is_422_naming_the_field(client) -> None:
    answer = await client.post(
        "/auth/token", data={"username": "a\x00b@example.com", "password": "p"}
    )

    assert answer.status_code == 422, answer.text
    assert answer.json()["fields"] == [
        {"field": "username", "message": "must not contain a NUL character"}
    ]
