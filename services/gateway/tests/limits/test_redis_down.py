"""Redis unreachable: writes are refused (limits cannot be checked), reads served."""

from __future__ import annotations

import socket

import pytest

from comfyserve.runtime.redis import redis_client

from ..fakes.auth import ADMIN_TOKEN, USER_TENANT, USER_TOKEN


@pytest.fixture
async def redis():
    """The production client, of a port nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = redis_client(f"redis://127.0.0.1:{port}/0", timeout_seconds=0.5)
    yield client
    await client.aclose()


def _user() -> dict[str, str]:
    return {"Authorization": f"Bearer {USER_TOKEN}"}


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/workflows/execute", {"workflow": {"1": {"class_type": "X"}}}),
        ("POST", "/auth/api-keys", {"name": "ci", "scopes": ["workflows:read"]}),
        ("POST", f"/admin/tenants/{USER_TENANT}/suspend", None),
        ("POST", "/auth/register", {"email": "a@example.com", "password": "x" * 12}),
    ],
)
async def test_a_write_is_503_saying_limits_cannot_be_checked(
    client, workflow, auth, method, path, body
):
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}

    response = await client.request(method, path, headers=headers, json=body)

    assert response.status_code == 503
    assert response.json()["error"] == "limits_unavailable"
    assert "Redis cannot be reached" in response.json()["detail"]
    assert "writes are refused" in response.json()["detail"]
    assert response.headers["Retry-After"] == "5"
    assert workflow.calls == auth.calls == []


async def test_an_upload_is_refused_too(client, storage):
    response = await client.post(
        "/files", headers=_user(), files={"file": ("a.txt", b"hi", "text/plain")}
    )

    assert response.status_code == 503
    assert response.json()["error"] == "limits_unavailable"
    assert storage.calls == []


@pytest.mark.parametrize("path", ["/workflows", "/auth/me", "/auth/api-keys"])
async def test_a_read_is_served_without_rate_limit_headers(client, path):
    response = await client.get(path, headers=_user())

    assert response.status_code == 200
    assert "RateLimit" not in response.headers
    assert "RateLimit-Policy" not in response.headers
