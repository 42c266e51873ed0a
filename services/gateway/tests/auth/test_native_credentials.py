"""Credentials from clients that cannot set a bearer header: HTTP Basic with
the key as the password on every route; a `token` query only on /ws."""

from __future__ import annotations

import base64

import pytest

from comfyserve.gateway.settings import Settings


@pytest.fixture
def key(settings: Settings) -> str:
    """Tenant A's bootstrap key."""
    return settings.api_keys[0].get_secret_value()


def basic(user: str, password: str) -> dict[str, str]:
    pair = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {pair}"}


async def test_basic_with_the_key_as_password_is_the_key_s_tenant(client, key) -> None:
    answer = await client.get("/workflows", headers=basic("anyone", key))

    assert answer.status_code == 200


async def test_basic_with_the_key_as_user_and_no_password_works(client, key) -> None:
    answer = await client.get("/workflows", headers=basic(key, ""))

    assert answer.status_code == 200


async def test_basic_with_a_bad_key_is_401_and_spends_the_auth_allowance(
    client, limiter
) -> None:
    answer = await client.get("/workflows", headers=basic("u", "csk_guess"))

    assert answer.status_code == 401
    assert "csk_guess" not in answer.text
    assert "auth" in {name for name, _, _ in limiter.acquired}


async def test_basic_that_is_not_base64_is_401(client) -> None:
    answer = await client.get("/workflows", headers={"Authorization": "Basic %%%"})

    assert answer.status_code == 401


async def test_a_token_query_is_no_credential_on_http_routes(client, key) -> None:
    answer = await client.get("/workflows", params={"token": key})

    assert answer.status_code == 401
