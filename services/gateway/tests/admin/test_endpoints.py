"""The `/admin` routes: tenants with usage, suspension, quotas, any key's revocation."""

from __future__ import annotations

from dataclasses import replace

import pytest

from comfyserve.contracts.pb.workflow.v1 import workflow_pb2 as wf

from ..fakes.auth import ADMIN_TENANT, USER_KEY, USER_TENANT


async def test_tenants_come_with_their_usage(client, auth_admin, workflow, storage):
    workflow.add_job(USER_TENANT, status=wf.JOB_STATUS_COMPLETED)
    workflow.add_job(USER_TENANT, status=wf.JOB_STATUS_COMPLETED)
    workflow.add_job(USER_TENANT, status=wf.JOB_STATUS_FAILED)
    storage.add_file(USER_TENANT, size=1000)
    storage.add_file(USER_TENANT, size=24)

    response = await client.get("/admin/tenants", headers=auth_admin)

    assert response.status_code == 200
    items = {item["id"]: item for item in response.json()["items"]}
    assert items[USER_TENANT]["usage"] == {
        "jobs_by_status": {"completed": 2, "failed": 1},
        # The fake counts 1.5 s of GPU time per job.
        "gpu_seconds": 4.5,
        "stored_bytes": 1024,
        "stored_files": 2,
    }
    assert items[ADMIN_TENANT]["usage"]["jobs_by_status"] == {}
    assert items[ADMIN_TENANT]["usage"]["stored_bytes"] == 0
    [usage] = [r for r in workflow.requests if isinstance(r, wf.GetUsageRequest)]
    assert sorted(usage.tenant_ids) == sorted(items)


async def test_tenants_are_paged_and_an_empty_page_asks_for_no_usage(
    client, auth_admin, auth, workflow, storage
):
    first = await client.get("/admin/tenants", headers=auth_admin, params={"limit": 1})
    cursor = first.json()["next_cursor"]
    second = await client.get(
        "/admin/tenants", headers=auth_admin, params={"limit": 1, "cursor": cursor}
    )
    workflow.calls.clear()
    storage.calls.clear()
    past = await client.get(
        "/admin/tenants", headers=auth_admin, params={"cursor": str(len(auth.tenants))}
    )

    assert len(first.json()["items"]) == len(second.json()["items"]) == 1
    assert first.json()["items"][0]["id"] != second.json()["items"][0]["id"]
    assert past.json() == {"items": [], "next_cursor": None}
    assert workflow.calls == storage.calls == []


async def test_a_suspended_tenant_may_read_but_not_write_until_reinstated(
    client, auth_admin, auth_user, api_workflow
):
    submit = {"workflow": api_workflow}

    suspended = await client.post(
        f"/admin/tenants/{USER_TENANT}/suspend", headers=auth_admin
    )
    write = await client.post("/workflows/execute", headers=auth_user, json=submit)
    upload = await client.post(
        "/files", headers=auth_user, files={"file": ("a.txt", b"hi", "text/plain")}
    )
    new_key = await client.post(
        "/auth/api-keys",
        headers=auth_user,
        json={"name": "x", "scopes": ["files:read"]},
    )
    read = await client.get("/workflows", headers=auth_user)
    keys = await client.get("/auth/api-keys", headers=auth_user)
    await client.post(f"/admin/tenants/{USER_TENANT}/reinstate", headers=auth_admin)
    again = await client.post("/workflows/execute", headers=auth_user, json=submit)

    assert suspended.json()["suspended"] is True
    for refused in (write, upload, new_key):
        assert refused.status_code == 403
        assert refused.json()["error"] == "tenant_suspended"
    assert read.status_code == keys.status_code == 200
    assert again.status_code == 202


async def test_a_tenant_the_auth_service_calls_suspended_cannot_write(
    client, principals, api_workflow
):
    # An API key's principal says so itself, before any admin route ran here.
    key = USER_KEY
    principals[key] = replace(principals[key], tenant_suspended=True)

    response = await client.post(
        "/workflows/execute",
        headers={"Authorization": f"Bearer {key}"},
        json={"workflow": api_workflow},
    )

    assert response.status_code == 403
    assert response.json()["error"] == "tenant_suspended"


async def test_quotas_are_read_and_set_through_the_workflow_service(
    client, auth_admin, workflow
):
    before = await client.get(f"/admin/tenants/{USER_TENANT}/quota", headers=auth_admin)
    changed = await client.put(
        f"/admin/tenants/{USER_TENANT}/quota",
        headers=auth_admin,
        json={"max_queued": 5},
    )

    assert before.json()["queued_is_default"] is True
    assert changed.status_code == 200
    assert changed.json() == {
        "tenant_id": USER_TENANT,
        "max_running": 2,
        "max_queued": 5,
        "running_is_default": True,
        "queued_is_default": False,
    }
    request = workflow.requests[-1]
    assert request.HasField("max_queued")
    assert not request.HasField("max_running")


@pytest.mark.parametrize(
    "body", [{"max_queued": 5, "tenant_id": "another"}, {"max_queued": 0}]
)
async def test_a_quota_refuses_unknown_fields_and_values_out_of_range(
    client, auth_admin, workflow, body
):
    response = await client.put(
        f"/admin/tenants/{USER_TENANT}/quota", headers=auth_admin, json=body
    )

    assert response.status_code == 422
    assert response.json()["error"] == "invalid_request"
    assert "set_tenant_quota" not in workflow.calls


async def test_an_administrator_revokes_any_tenants_key(client, auth_admin, auth):
    key = auth.add_key(USER_TENANT)

    response = await client.delete(f"/admin/api-keys/{key.id}", headers=auth_admin)

    assert response.status_code == 200
    assert response.json()["tenant_id"] == USER_TENANT
    assert key.HasField("revoked_at")


async def test_a_bootstrap_key_sets_quotas_but_cannot_list_tenants(
    client, auth_a, auth
):
    quota = await client.put(
        f"/admin/tenants/{USER_TENANT}/quota", headers=auth_a, json={"max_running": 3}
    )
    tenants = await client.get("/admin/tenants", headers=auth_a)

    assert quota.status_code == 200
    assert tenants.status_code == 403
    assert tenants.json()["error"] == "bootstrap_key"
    assert auth.calls == []
