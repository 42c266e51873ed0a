import pytest

from comfyserve.contracts.pb.notifier.v1 import notifier_pb2 as nt
from comfyserve.contracts.pb.workflow.v1 import workflow_pb2 as wf
from comfyserve.runtime.auth import PrincipalKind

from ..fakes.auth import USER_TENANT, user_principal

READ_ONLY_KEY = "test-key-webhooks-read-only"


async def test_an_endpoint_is_registered_with_a_secret_shown_once(
    client, auth_a, notifier, tenant_a
):
    created = await client.post(
        "/webhooks/endpoints",
        headers=auth_a,
        json={
            "url": "https://hooks.example.com/in",
            "event_types": ["job.started", "job.completed", "job.started"],
            "description": "orders",
        },
    )

    assert created.status_code == 201, created.text
    body = created.json()
    assert body["secret"].startswith("whsec_")
    assert created.headers["location"] == f"/webhooks/endpoints/{body['id']}"
    [request] = notifier.requests
    assert request.tenant_id == tenant_a
    assert request.url == "https://hooks.example.com/in"
    assert list(request.event_types) == ["job.started", "job.completed"]

    shown = await client.get(f"/webhooks/endpoints/{body['id']}", headers=auth_a)
    listed = await client.get("/webhooks/endpoints", headers=auth_a)
    assert "secret" not in shown.json()
    assert shown.json()["description"] == "orders"
    assert shown.json()["disabled_reason"] is None
    assert [item["id"] for item in listed.json()["items"]] == [body["id"]]
    assert "secret" not in listed.json()["items"][0]


async def test_a_url_the_notifier_refuses_is_a_422_naming_it(client, auth_a):
    refused = await client.post(
        "/webhooks/endpoints",
        headers=auth_a,
        json={"url": "http://10.0.0.7/hook"},
    )

    assert refused.status_code == 422
    assert refused.json()["error"] == "invalid_argument"
    assert refused.json()["fields"] == [
        {"field": "url", "message": "resolves to a private address"}
    ]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"url": "ftp://hooks.example.com/in"}, "body.url"),
        (
            {"url": "https://h.example", "event_types": ["webhook.test"]},
            "body.event_types",
        ),
        (
            {"url": "https://h.example", "event_types": ["job.lost"]},
            "body.event_types.0",
        ),
        ({"url": "https://h.example", "secret": "whsec_mine"}, "body.secret"),
    ],
)
async def test_a_bad_endpoint_body_is_a_422_naming_the_field(
    client, auth_a, notifier, body, field
):
    refused = await client.post("/webhooks/endpoints", headers=auth_a, json=body)

    assert refused.status_code == 422
    assert field in [item["field"] for item in refused.json()["fields"]]
    assert notifier.calls == []


async def test_patch_changes_only_the_fields_sent(client, auth_a, notifier, tenant_a):
    endpoint = notifier.add_endpoint(
        tenant_a, event_types=["job.started"], enabled=False, disabled_reason="gone"
    )
    path = f"/webhooks/endpoints/{endpoint.id}"

    enabled = await client.patch(path, headers=auth_a, json={"enabled": True})
    emptied = await client.patch(path, headers=auth_a, json={"event_types": []})

    assert enabled.status_code == 200, enabled.text
    assert enabled.json()["enabled"] is True
    assert enabled.json()["disabled_reason"] is None
    first, second = notifier.requests
    assert not first.HasField("url")
    assert not first.HasField("event_types")
    # An empty filter is sent as set: it means the final events.
    assert second.HasField("event_types")
    assert not second.HasField("enabled")
    assert emptied.json()["event_types"] == []


async def test_another_tenants_endpoint_is_not_found(
    client, auth_b, notifier, tenant_a
):
    endpoint = notifier.add_endpoint(tenant_a)

    for method, suffix in [("GET", ""), ("DELETE", ""), ("POST", "/test")]:
        path = f"/webhooks/endpoints/{endpoint.id}{suffix}"
        answer = await client.request(method, path, headers=auth_b)
        assert answer.status_code == 404, (method, suffix)
        assert answer.json()["error"] == "not_found"
    assert endpoint.id in notifier.endpoints
    not_an_id = await client.get("/webhooks/endpoints/42", headers=auth_b)
    assert not_an_id.status_code == 404


async def test_delete_and_test_an_endpoint(client, auth_a, notifier, tenant_a):
    endpoint = notifier.add_endpoint(tenant_a)
    path = f"/webhooks/endpoints/{endpoint.id}"

    tested = await client.post(f"{path}/test", headers=auth_a)
    deleted = await client.delete(path, headers=auth_a)

    assert tested.status_code == 202
    assert tested.json()["event_type"] == "webhook.test"
    assert tested.json()["endpoint_id"] == endpoint.id
    assert tested.json()["status"] == "pending"
    assert deleted.status_code == 204
    assert endpoint.id not in notifier.endpoints


async def test_the_signing_secret_is_shown_and_rotated(client, auth_a):
    shown = await client.get("/webhooks/secret", headers=auth_a)
    rotated = await client.post("/webhooks/secret/rotate", headers=auth_a)
    again = await client.get("/webhooks/secret", headers=auth_a)

    assert shown.json()["secret"].startswith("whsec_")
    assert shown.json()["previous_expires_at"] is None
    assert rotated.json()["secret"] != shown.json()["secret"]
    assert rotated.json()["previous_expires_at"] is not None
    assert again.json() == rotated.json()


async def test_reading_the_secret_takes_the_write_scope(client, principals):
    principals[READ_ONLY_KEY] = user_principal(
        READ_ONLY_KEY,
        USER_TENANT,
        frozenset({"webhooks:read"}),
        PrincipalKind.API_KEY,
    )
    headers = {"Authorization": f"Bearer {READ_ONLY_KEY}"}

    secret = await client.get("/webhooks/secret", headers=headers)
    endpoints = await client.get("/webhooks/endpoints", headers=headers)
    create = await client.post(
        "/webhooks/endpoints", headers=headers, json={"url": "https://h.example"}
    )

    assert secret.status_code == 403
    assert secret.json()["required_scopes"] == ["webhooks:write"]
    assert endpoints.status_code == 200
    assert create.status_code == 403


async def test_deliveries_are_listed_by_status_and_endpoint(
    client, auth_a, notifier, tenant_a, tenant_b
):
    endpoint = notifier.add_endpoint(tenant_a)
    dead = notifier.add_delivery(
        tenant_a,
        endpoint_id=endpoint.id,
        status=nt.DELIVERY_STATUS_DEAD,
        dead_reason="gone",
    )
    notifier.add_delivery(tenant_a)
    notifier.add_delivery(tenant_b, endpoint_id=endpoint.id)

    everything = await client.get("/webhooks/deliveries", headers=auth_a)
    filtered = await client.get(
        "/webhooks/deliveries",
        headers=auth_a,
        params={"status": "dead", "endpoint": endpoint.id},
    )

    assert len(everything.json()["items"]) == 2
    [item] = filtered.json()["items"]
    assert item["id"] == dead.id
    assert item["dead_reason"] == "gone"
    assert item["attempts"] is None
    request = notifier.requests[-1]
    assert request.status == nt.DELIVERY_STATUS_DEAD
    assert request.endpoint_id == endpoint.id


async def test_a_delivery_shows_its_attempts_and_replays(
    client, auth_a, notifier, tenant_a
):
    delivery = notifier.add_delivery(tenant_a, job_id="j-1")

    shown = await client.get(f"/webhooks/deliveries/{delivery.id}", headers=auth_a)
    replayed = await client.post(
        f"/webhooks/deliveries/{delivery.id}/replay", headers=auth_a
    )

    assert shown.json()["execution_id"] == "j-1"
    assert shown.json()["endpoint_id"] is None
    [attempt] = shown.json()["attempts"]
    assert attempt["status_code"] == 204
    assert attempt["error"] is None
    assert replayed.status_code == 202
    assert replayed.json()["id"] == delivery.id
    assert replayed.json()["status"] == "pending"


async def test_an_executions_deliveries_need_an_execution_the_caller_sees(
    client, auth_a, auth_b, workflow, notifier, tenant_a
):
    job = workflow.add_job(tenant_a, status=wf.JOB_STATUS_COMPLETED)
    mine = notifier.add_delivery(tenant_a, job_id=job.id)
    notifier.add_delivery(tenant_a, job_id="another-job")

    listed = await client.get(f"/workflows/{job.id}/deliveries", headers=auth_a)
    theirs = await client.get(f"/workflows/{job.id}/deliveries", headers=auth_b)

    assert [item["id"] for item in listed.json()["items"]] == [mine.id]
    assert theirs.status_code == 404
    assert theirs.json()["error"] == "not_found"
