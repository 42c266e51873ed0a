import pytest


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer not-a-key"},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"Authorization": "Bearer"},
    ],
    ids=["missing", "unknown-key", "other-scheme", "empty"],
)
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/workflows"),
        ("POST", "/workflows/execute"),
        ("GET", "/workflows/00000000-0000-0000-0000-000000000000"),
        ("GET", "/files/00000000-0000-0000-0000-000000000000"),
    ],
)
async def test_routes_answer_401_without_a_valid_bearer_key(
    client, workflow, headers, method, path
):
    response = await client.request(
        method, path, headers=headers, json={"workflow": {}}
    )

    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert response.json()["error"] == "unauthorized"
    assert workflow.requests == []


async def test_health_needs_no_principal(client):
    assert (await client.get("/health/live")).status_code == 200
    assert (await client.get("/health/ready")).status_code == 200
