"""ComfyUI's G3 `/api/jobs` routes over the fakes."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from comfyserve.contracts.pb.workflow.v1 import workflow_pb2 as wf


def _done(workflow, tenant, ts, seconds, **fields):
    return workflow.add_job(
        tenant,
        status=wf.JOB_STATUS_COMPLETED,
        started_at=ts(datetime(2030, 1, 1, 0, 0, 0, tzinfo=UTC)),
        completed_at=ts(datetime(2030, 1, 1, 0, 0, seconds, tzinfo=UTC)),
        duration_seconds=float(seconds),
        **fields,
    )


async def test_jobs_are_listed_with_g3_statuses_and_pagination(
    client, auth_a, workflow, tenant_a, tenant_b, ts
):
    pending = workflow.add_job(tenant_a)
    running = workflow.add_job(tenant_a, status=wf.JOB_STATUS_RUNNING)
    done = _done(
        workflow,
        tenant_a,
        ts,
        3,
        outputs=[wf.OutputFile(node_id="9", filename="a.png", kind=1)],
    )
    expired = workflow.add_job(tenant_a, status=wf.JOB_STATUS_EXPIRED)
    workflow.add_job(tenant_b)

    response = await client.get("/api/jobs", headers=auth_a)

    body = response.json()
    statuses = {job["id"]: job["status"] for job in body["jobs"]}
    assert statuses == {
        pending.id: "pending",
        running.id: "in_progress",
        done.id: "completed",
        expired.id: "failed",
    }
    assert [job["id"] for job in body["jobs"]][0] == expired.id
    assert body["pagination"] == {
        "offset": 0,
        "limit": None,
        "total": 4,
        "has_more": False,
    }
    summary = next(job for job in body["jobs"] if job["id"] == done.id)
    assert summary["outputs_count"] == summary["previewable_outputs_count"] == 1
    assert summary["preview_output"]["nodeId"] == "9"
    assert summary["execution_end_time"] - summary["execution_start_time"] == 3000
    assert "execution_error" not in summary


async def test_filters_sorting_and_offsets(client, auth_a, workflow, tenant_a, ts):
    short, long = _done(workflow, tenant_a, ts, 1), _done(workflow, tenant_a, ts, 9)
    workflow.add_job(tenant_a)

    response = await client.get(
        "/api/jobs?status=completed,failed&sort_by=execution_duration"
        "&sort_order=desc&limit=1",
        headers=auth_a,
    )
    after = await client.get(
        "/api/jobs?status=completed&sort_by=execution_duration&limit=1&offset=1",
        headers=auth_a,
    )

    assert [job["id"] for job in response.json()["jobs"]] == [long.id]
    assert response.json()["pagination"]["has_more"] is True
    assert [job["id"] for job in after.json()["jobs"]] == [short.id]
    assert after.json()["pagination"]["total"] == 2


@pytest.mark.parametrize(
    "query",
    ["status=done", "sort_by=name", "sort_order=up", "limit=0", "offset=-1", "limit=x"],
)
async def test_bad_parameters_are_400(client, auth_a, workflow, query):
    response = await client.get(f"/api/jobs?{query}", headers=auth_a)
    assert response.status_code == 400
    assert isinstance(response.json()["error"], str)
    assert workflow.calls == []


async def test_a_workflow_id_matches_nothing(client, auth_a, workflow, tenant_a):
    workflow.add_job(tenant_a)
    response = await client.get("/api/jobs?workflow_id=w1", headers=auth_a)
    assert response.json()["jobs"] == []


async def test_one_job_in_full_and_anothers_as_missing(
    client, auth_a, workflow, tenant_a, tenant_b
):
    mine = workflow.add_job(
        tenant_a, workflow_json='{"1": {"class_type": "X", "inputs": {}}}'
    )
    theirs = workflow.add_job(tenant_b)

    found = await client.get(f"/api/jobs/{mine.id}", headers=auth_a)
    hidden = await client.get(f"/api/jobs/{theirs.id}", headers=auth_a)

    body = found.json()
    assert body["id"] == mine.id
    assert body["workflow"]["prompt"] == {"1": {"class_type": "X", "inputs": {}}}
    assert body["execution_status"] is None
    assert (hidden.status_code, hidden.json()) == (404, {"error": "Job not found"})


async def test_cancel_one_and_many(client, auth_a, workflow, tenant_a, tenant_b, ts):
    pending = workflow.add_job(tenant_a)
    running = workflow.add_job(tenant_a, status=wf.JOB_STATUS_RUNNING)
    done = _done(workflow, tenant_a, ts, 1)
    theirs = workflow.add_job(tenant_b)

    one = await client.post(f"/api/jobs/{pending.id}/cancel", headers=auth_a)
    ended = await client.post(f"/api/jobs/{done.id}/cancel", headers=auth_a)
    foreign = await client.post(f"/api/jobs/{theirs.id}/cancel", headers=auth_a)
    many = await client.post(
        "/api/jobs/cancel", headers=auth_a, json={"job_ids": [running.id]}
    )
    bad = await client.post(
        "/api/jobs/cancel", headers=auth_a, json={"job_ids": [running.id, "nope"]}
    )

    assert one.json() == many.json() == {"cancelled": True}
    assert ended.json() == foreign.json() == {"cancelled": False}
    assert workflow.jobs[pending.id].status == wf.JOB_STATUS_CANCELLED
    assert workflow.jobs[running.id].cancel_requested
    assert workflow.jobs[theirs.id].status == wf.JOB_STATUS_PENDING
    assert bad.status_code == 400
    assert bad.json()["invalid_ids"] == ["nope"]
