from prometheus_client import generate_latest


async def test_live_is_always_200(client, probes):
    for probe in probes:
        probe.healthy = False

    response = await client.get("/health/live")

    assert response.status_code == 200


async def test_ready_reports_every_check(client):
    response = await client.get("/health/ready")

    assert response.status_code == 200
    assert response.json() == {
        "status": "ready",
        "checks": {"workflow": "ok", "storage": "ok", "redis": "ok"},
    }


async def test_ready_is_503_listing_what_failed(client, probes):
    probes[1].healthy = False
    probes[2].healthy = False

    response = await client.get("/health/ready")

    assert response.status_code == 503
    body = response.json()
    assert body["error"] == "not_ready"
    assert body["failed"] == ["storage", "redis"]
    assert body["checks"]["workflow"] == "ok"


async def test_the_public_listener_serves_no_metrics(client):
    assert (await client.get("/metrics")).status_code == 404


async def test_metrics_count_requests_by_route_template(app, client, auth_a):
    await client.get("/workflows/00000000-0000-4000-8000-000000000000", headers=auth_a)
    await client.get("/no/such/route")

    text = generate_latest(app.state.metrics.registry).decode()

    assert (
        'gateway_http_requests_total{method="GET",'
        'route="/workflows/{execution_id}",status="4xx"} 1.0'
    ) in text
    assert 'route="unmatched",status="4xx"' in text
    assert "gateway_http_request_duration_seconds_bucket" in text
    assert "00000000-0000" not in text
