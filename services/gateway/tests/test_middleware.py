import json
import re
import uuid

import httpx
import pytest
import structlog

from comfyserve.runtime.logging import configure_logging


async def _ok(client, auth_a):
    return await client.get("/workflows", headers=auth_a)


async def _not_found(client, auth_a):
    return await client.get("/no/such/route")


async def _missing_job(client, auth_a):
    return await client.get(f"/workflows/{uuid.uuid4()}", headers=auth_a)


async def _unauthorized(client, auth_a):
    return await client.get("/workflows")


async def _rate_limited(client, auth_a):
    # One past the burst of 3 the app is given.
    for _ in range(4):
        response = await client.get("/auth/me", headers=auth_a)
    return response


@pytest.mark.parametrize(
    ("request_", "status"),
    [
        (_ok, 200),
        (_not_found, 404),
        (_missing_job, 404),
        (_unauthorized, 401),
        (_rate_limited, 429),
    ],
    ids=["200", "404", "404-job", "401", "429"],
)
async def test_every_response_has_a_request_id_and_security_headers(
    make_app, settings, serve_app, auth_a, request_, status
):
    limited = settings.model_copy(update={"rate_read_burst": 3})
    async with serve_app(make_app(limited)) as client:
        response = await request_(client, auth_a)

    assert response.status_code == status
    assert re.fullmatch(r"[0-9a-f]{32}", response.headers["X-Request-Id"])
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["Referrer-Policy"] == "no-referrer"
    policy = response.headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy
    assert "frame-ancestors 'none'" in policy
    # Plain HTTP: the gateway does not claim HTTPS it is not served over.
    assert "Strict-Transport-Security" not in response.headers


async def test_hsts_is_sent_over_https(app):
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(
        transport=transport, base_url="https://gateway.example"
    ) as client:
        response = await client.get("/health/live")

    assert response.headers["Strict-Transport-Security"] == "max-age=31536000"


async def test_a_well_formed_request_id_is_kept_and_others_replaced(client):
    kept = await client.get("/health/live", headers={"X-Request-Id": "abc-123"})
    replaced = await client.get("/health/live", headers={"X-Request-Id": "a b\x7f"})

    assert kept.headers["X-Request-Id"] == "abc-123"
    assert replaced.headers["X-Request-Id"] != "a b\x7f"


async def test_errors_keep_the_error_shape_and_headers(client):
    response = await client.get("/no/such/route")

    assert response.status_code == 404
    assert response.json() == {"error": "not_found", "detail": "Not Found"}
    assert "X-Request-Id" in response.headers


async def test_the_docs_load_under_their_own_policy(client):
    docs = await client.get("/docs")
    redoc = await client.get("/redoc")
    schema = await client.get("/openapi.json")

    assert docs.status_code == redoc.status_code == schema.status_code == 200
    policy = docs.headers["Content-Security-Policy"]
    assert "script-src 'self' 'sha256-" in policy
    assert "frame-ancestors 'none'" in policy
    assert "/workflows/execute" in schema.json()["paths"]


async def test_an_unexpected_failure_is_a_generic_500_with_a_request_id(
    client, workflow, auth_a, api_workflow
):
    workflow.fail_with = RuntimeError("connection string with a password")

    response = await client.post(
        "/workflows/execute", headers=auth_a, json={"workflow": api_workflow}
    )

    assert response.status_code == 500
    assert response.json() == {
        "error": "internal_error",
        "detail": "Internal server error",
    }
    assert "X-Request-Id" in response.headers


@pytest.mark.parametrize(
    ("origins", "allowed"),
    [(["https://app.example.com"], True), ([], False)],
)
async def test_cors_only_for_configured_origins(
    make_app, settings, serve_app, origins, allowed
):
    app = make_app(settings.model_copy(update={"cors_origins": origins}))
    async with serve_app(app) as client:
        preflight = await client.options(
            "/workflows/execute",
            headers={
                "Origin": "https://app.example.com",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization,idempotency-key",
            },
        )
        other = await client.get(
            "/health/live", headers={"Origin": "https://evil.example.com"}
        )
        simple = await client.get(
            "/health/live", headers={"Origin": "https://app.example.com"}
        )

    assert ("access-control-allow-origin" in preflight.headers) is allowed
    assert "access-control-allow-origin" not in other.headers
    if allowed:
        # A page of the origin may read the rate limit of what it was answered.
        exposed = simple.headers["access-control-expose-headers"]
        assert {"Retry-After", "RateLimit", "RateLimit-Policy"} <= set(
            exposed.split(", ")
        )


async def test_a_requests_log_lines_name_its_tenant_and_job(capsys, client, auth_a):
    # Set up here, not in a fixture: capsys swaps its streams between the two.
    configure_logging("info")
    # Not cached, so no logger outlives this test bound to its capture file.
    structlog.configure(cache_logger_on_first_use=False)
    job_id = str(uuid.uuid4())

    await client.get(f"/workflows/{job_id}", headers=auth_a)
    await client.get("/workflows", headers=auth_a)

    finished = [
        record
        for record in map(json.loads, capsys.readouterr().out.splitlines())
        if record["event"] == "gateway.request.finished"
    ]
    one, listing = finished
    assert one["job_id"] == job_id
    assert one["tenant_id"]
    # Bound for its own request only.
    assert "job_id" not in listing
    assert listing["tenant_id"] == one["tenant_id"]
