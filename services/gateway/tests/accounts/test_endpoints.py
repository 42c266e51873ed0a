"""The `/auth` routes and the JWKS against a fake AuthService."""

from __future__ import annotations

import grpc
import pytest

from ..fakes.auth import USER_TENANT, USER_TOKEN

EMAIL = "ada@example.com"
PASSWORD = "analytical engine"


@pytest.fixture
def user(auth):
    auth.passwords[EMAIL] = PASSWORD
    return {"Authorization": f"Bearer {USER_TOKEN}"}


def _form(username: str = EMAIL, password: str = PASSWORD, **extra: str):
    return {"username": username, "password": password, **extra}


async def test_register_creates_a_user_and_its_tenant(client, auth):
    response = await client.post(
        "/auth/register",
        json={"email": EMAIL, "password": PASSWORD, "tenant_name": "Babbage & Co"},
    )

    assert response.status_code == 201
    body = response.json()
    assert body["email"] == EMAIL
    assert body["role"] == "owner"
    assert auth.tenants[body["tenant_id"]].name == "Babbage & Co"
    assert "password" not in body


async def test_register_refuses_unknown_fields_and_a_taken_email(client, auth, user):
    extra = await client.post(
        "/auth/register",
        json={"email": "new@example.com", "password": PASSWORD, "role": "admin"},
    )
    taken = await client.post(
        "/auth/register", json={"email": EMAIL, "password": PASSWORD}
    )

    assert extra.status_code == 422
    assert extra.json()["fields"][0]["field"] == "body.role"
    assert taken.status_code == 409
    assert taken.json()["error"] == "email_taken"
    assert auth.calls == ["register"]


async def test_a_short_password_is_422_naming_the_field(client):
    response = await client.post(
        "/auth/register", json={"email": "b@example.com", "password": "short"}
    )

    assert response.status_code == 422
    assert response.json()["error"] == "invalid_argument"
    assert response.json()["fields"][0]["field"] == "password"


async def test_the_token_route_takes_the_oauth2_password_form(client, auth, user):
    response = await client.post(
        "/auth/token", data=_form(scope="workflows:read files:read")
    )

    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"access_token", "refresh_token", "token_type", "expires_in"}
    assert body["token_type"] == "bearer"
    assert body["access_token"] == USER_TOKEN
    assert body["expires_in"] == 900
    assert response.headers["Cache-Control"] == "no-store"
    [request] = auth.requests
    assert (request.email, request.password) == (EMAIL, PASSWORD)
    assert list(request.scopes) == ["workflows:read", "files:read"]
    assert request.client_address == "127.0.0.1"


async def test_the_token_route_wants_a_form_not_json(client, user):
    response = await client.post(
        "/auth/token", json={"username": EMAIL, "password": PASSWORD}
    )

    assert response.status_code == 422
    assert response.json()["error"] == "invalid_request"


async def test_a_wrong_password_and_an_unknown_user_answer_alike(client, user):
    wrong = await client.post("/auth/token", data=_form(password="not it at all"))
    unknown = await client.post("/auth/token", data=_form("nobody@example.com"))

    assert wrong.status_code == unknown.status_code == 401
    assert (
        wrong.json()
        == unknown.json()
        == {
            "error": "invalid_credentials",
            "detail": "Invalid e-mail or password",
        }
    )
    assert wrong.headers["WWW-Authenticate"] == "Bearer"


async def test_a_throttled_sign_in_is_429_with_the_wait_whoever_it_names(
    client, auth, user
):
    auth.throttled |= {EMAIL, "nobody@example.com"}

    known = await client.post("/auth/token", data=_form())
    unknown = await client.post("/auth/token", data=_form("nobody@example.com"))

    assert known.status_code == unknown.status_code == 429
    assert (
        known.json()
        == unknown.json()
        == {
            "error": "too_many_attempts",
            "detail": "Too many failed sign-ins; retry later",
        }
    )
    assert known.headers["Retry-After"] == unknown.headers["Retry-After"] == "42"


async def test_a_throttle_without_a_wait_still_says_when(client, auth, rpc_error):
    auth.failures["login"] = rpc_error(grpc.StatusCode.RESOURCE_EXHAUSTED, "slow")

    response = await client.post("/auth/token", data=_form())

    assert response.status_code == 429
    assert response.headers["Retry-After"] == "60"


async def test_sign_in_while_the_auth_service_is_down_is_503(client, auth, rpc_error):
    auth.failures["login"] = rpc_error(grpc.StatusCode.UNAVAILABLE, "down")

    response = await client.post("/auth/token", data=_form())

    assert response.status_code == 503
    assert response.json()["error"] == "service_unavailable"


async def test_refresh_rotates_and_a_reused_token_is_401(client, auth, user):
    first = auth.session(EMAIL)

    rotated = await client.post("/auth/refresh", json={"refresh_token": first})
    reused = await client.post("/auth/refresh", json={"refresh_token": first})

    assert rotated.status_code == 200
    assert rotated.json()["refresh_token"] != first
    assert rotated.headers["Cache-Control"] == "no-store"
    assert reused.status_code == 401
    assert reused.json()["error"] == "unauthorized"


async def test_logout_ends_the_session(client, auth, user):
    session = auth.session(EMAIL)

    out = await client.post(
        "/auth/logout", headers=user, json={"refresh_token": session}
    )
    after = await client.post("/auth/refresh", json={"refresh_token": session})

    assert out.status_code == 204
    assert auth.credentials == [USER_TOKEN]
    assert after.status_code == 401


async def test_me_describes_the_caller(client, user, auth_a, tenant_a):
    mine = await client.get("/auth/me", headers=user)
    bootstrap = await client.get("/auth/me", headers=auth_a)

    assert mine.status_code == 200
    assert mine.json()["kind"] == "user"
    assert mine.json()["tenant_id"] == USER_TENANT
    assert "admin" not in mine.json()["scopes"]
    assert bootstrap.json()["tenant_id"] == tenant_a
    assert bootstrap.json()["kind"] == "api_key"
    assert "admin" in bootstrap.json()["scopes"]


async def test_an_api_key_is_shown_once_then_listed_without_its_secret(
    client, auth, user
):
    created = await client.post(
        "/auth/api-keys",
        headers=user,
        json={
            "name": "ci",
            "scopes": ["workflows:read", "workflows:write"],
            "rate_limit": {"per_minute": 30, "burst": 5},
        },
    )
    listed = await client.get("/auth/api-keys", headers=user)

    assert created.status_code == 201
    secret = created.json()["secret"]
    assert secret.startswith("csk_")
    assert created.headers["Cache-Control"] == "no-store"
    assert created.json()["rate_limit"] == {"per_minute": 30, "burst": 5}
    [item] = listed.json()["items"]
    assert item["id"] == created.json()["id"]
    assert "secret" not in item
    assert secret not in listed.text
    # The new key works at once, with its own scopes.
    own = {"Authorization": f"Bearer {secret}"}
    assert (await client.get("/workflows", headers=own)).status_code == 200
    assert (await client.get("/auth/api-keys", headers=own)).status_code == 403


async def test_a_key_is_refused_unknown_fields_and_scopes(client, auth, user):
    extra = await client.post(
        "/auth/api-keys",
        headers=user,
        json={"name": "ci", "scopes": ["workflows:read"], "tenant_id": "another"},
    )
    unknown_scope = await client.post(
        "/auth/api-keys", headers=user, json={"name": "ci", "scopes": ["root"]}
    )
    beyond = await client.post(
        "/auth/api-keys", headers=user, json={"name": "ci", "scopes": ["admin"]}
    )

    assert extra.status_code == unknown_scope.status_code == 422
    assert beyond.status_code == 403
    assert beyond.json() == {"error": "forbidden", "detail": "missing scope: admin"}
    assert auth.calls == ["create_api_key"]


async def test_revoking_answers_the_key_and_another_tenants_is_404(
    client, auth, user, tenant_a
):
    mine = auth.add_key(USER_TENANT)
    theirs = auth.add_key(tenant_a)

    revoked = await client.delete(f"/auth/api-keys/{mine.id}", headers=user)
    other = await client.delete(f"/auth/api-keys/{theirs.id}", headers=user)

    assert revoked.status_code == 200
    assert revoked.json()["revoked_at"].startswith("2030-01-02")
    assert other.status_code == 404
    assert not theirs.HasField("revoked_at")


async def test_a_bootstrap_key_cannot_act_through_the_auth_service(
    client, auth, auth_a
):
    response = await client.post(
        "/auth/api-keys", headers=auth_a, json={"name": "ci", "scopes": ["admin"]}
    )

    assert response.status_code == 403
    assert response.json()["error"] == "bootstrap_key"
    assert auth.calls == []


async def test_the_jwks_is_the_auth_services_keys(client, auth):
    auth.jwks_json = '{"keys": [{"kty": "OKP", "crv": "Ed25519", "kid": "k1"}]}'

    response = await client.get("/.well-known/jwks.json")

    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    assert response.json() == {"keys": [{"kty": "OKP", "crv": "Ed25519", "kid": "k1"}]}
    assert "max-age" in response.headers["Cache-Control"]
