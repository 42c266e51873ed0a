"""Submits the gateway refuses for the tenant's quota or for fields it does not
take."""

import grpc
import pytest


@pytest.mark.parametrize(
    ("retry_after_s", "header"), [(5, "5"), (2.5, "3"), (0.2, "1"), (None, "2")]
)
async def test_a_tenant_over_its_queue_quota_is_429_queue_full(
    client, workflow, rpc_error, auth_a, api_workflow, retry_after_s, header
):
    detail = "queue_full: this tenant already has 100 jobs queued"
    workflow.failures["submit_job"] = rpc_error(
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        detail,
        reason="queue_full",
        retry_after_s=retry_after_s,
    )

    response = await client.post(
        "/workflows/execute", headers=auth_a, json={"workflow": api_workflow}
    )

    assert response.status_code == 429
    assert response.json() == {"error": "queue_full", "detail": detail}
    # Whole seconds, rounded up; the service's wait, else the gateway's default.
    assert response.headers["Retry-After"] == header


@pytest.mark.parametrize(
    "field", ["tenant_id", "status", "idempotency_key", "workflow_json"]
)
async def test_a_submit_with_an_unknown_field_is_422(
    client, workflow, auth_a, api_workflow, field
):
    response = await client.post(
        "/workflows/execute",
        headers=auth_a,
        json={"workflow": api_workflow, field: "x"},
    )

    assert response.status_code == 422
    assert response.json()["fields"] == [
        {"field": f"body.{field}", "message": "Extra inputs are not permitted"}
    ]
    assert workflow.calls == []
