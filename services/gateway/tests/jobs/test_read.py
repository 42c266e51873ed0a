from datetime import UTC, datetime

import pytest

from comfyserve.contracts.pb.workflow.v1 import workflow_pb2 as wf
from comfyserve.gateway.jobs.models import JobStatus

NO_SUCH_JOB = "00000000-0000-4000-8000-000000000000"


def _finished_job(workflow, storage, tenant, ts):
    first = storage.add_file(tenant, filename="a.png", key="outputs/a.png")
    second = storage.add_file(tenant, filename="b.png", key="outputs/b.png")
    return workflow.add_job(
        tenant,
        status=wf.JOB_STATUS_COMPLETED,
        priority=wf.PRIORITY_HIGH,
        started_at=ts(datetime(2030, 1, 1, 0, 0, 5, tzinfo=UTC)),
        completed_at=ts(datetime(2030, 1, 1, 0, 0, 9, tzinfo=UTC)),
        duration_seconds=4.0,
        attempt=1,
        metadata={"order": "42"},
        webhook_url="https://hooks.example.com/x",
        timeout_seconds=300,
        outputs=[
            wf.OutputFile(
                file_id=first.id,
                node_id="9",
                index=0,
                filename="a.png",
                kind=wf.OUTPUT_KIND_IMAGE,
                content_type="image/png",
                size=10,
                width=64,
                height=32,
            ),
            wf.OutputFile(
                file_id=second.id,
                node_id="9",
                index=1,
                filename="b.png",
                kind=wf.OUTPUT_KIND_IMAGE,
                content_type="image/png",
                size=11,
            ),
        ],
    )


async def test_get_returns_the_job_with_presigned_output_urls(
    client, workflow, storage, auth_a, tenant_a, ts
):
    job = _finished_job(workflow, storage, tenant_a, ts)

    response = await client.get(f"/workflows/{job.id}", headers=auth_a)

    assert response.status_code == 200
    body = response.json()
    assert body["execution_id"] == job.id
    assert body["status"] == "completed"
    assert body["priority"] == "high"
    assert body["started_at"] == "2030-01-01T00:00:05Z"
    assert body["completed_at"] == "2030-01-01T00:00:09Z"
    assert body["duration_seconds"] == 4.0
    assert body["attempt"] == 1
    assert body["progress"] is None
    assert body["error"] is None
    assert body["metadata"] == {"order": "42"}
    assert body["webhook_url"] == "https://hooks.example.com/x"
    assert body["timeout_minutes"] == 5
    assert body["links"]["self"] == f"http://testserver/workflows/{job.id}"
    first, second = body["outputs"]
    assert first == {
        "file_id": job.outputs[0].file_id,
        "node_id": "9",
        "filename": "a.png",
        "content_type": "image/png",
        "size": 10,
        "width": 64,
        "height": 32,
        "kind": "image",
        "url": "http://objects.test/bucket/outputs/a.png?sig=get",
        "url_expires_at": "2030-01-01T00:05:00Z",
    }
    assert second["width"] is None
    assert second["url"] == "http://objects.test/bucket/outputs/b.png?sig=get"
    # One presign call covers every output.
    [presign] = storage.download_url_calls
    assert list(presign.file_ids) == [output.file_id for output in job.outputs]
    assert presign.tenant_id == tenant_a


async def test_a_running_job_shows_its_progress(client, workflow, auth_a, tenant_a):
    job = workflow.add_job(
        tenant_a,
        status=wf.JOB_STATUS_RUNNING,
        attempt=2,
        progress=wf.Progress(
            node_id="3",
            class_type="KSampler",
            step=4,
            max=20,
            fraction=0.5,
            nodes_done=2,
            nodes_total=4,
        ),
    )

    body = (await client.get(f"/workflows/{job.id}", headers=auth_a)).json()

    assert body["status"] == "running"
    assert body["attempt"] == 2
    assert body["progress"] == {
        "node_id": "3",
        "class_type": "KSampler",
        "step": 4,
        "max": 20,
        "fraction": 0.5,
        "nodes_done": 2,
        "nodes_total": 4,
    }
    assert body["outputs"] == []


@pytest.mark.parametrize(
    ("status", "error", "expected"),
    [
        (
            wf.JOB_STATUS_FAILED,
            wf.JobError(
                code="node_execution_error",
                message="boom",
                node_id="3",
                class_type="KSampler",
                traceback="secret internals",
            ),
            {
                "code": "node_execution_error",
                "message": "boom",
                "node_id": "3",
                "class_type": "KSampler",
            },
        ),
        (
            wf.JOB_STATUS_EXPIRED,
            wf.JobError(code="timeout", message="past its deadline"),
            {
                "code": "timeout",
                "message": "past its deadline",
                "node_id": None,
                "class_type": None,
            },
        ),
    ],
)
async def test_failed_and_expired_jobs_are_failed_with_their_error(
    client, workflow, auth_a, tenant_a, status, error, expected
):
    job = workflow.add_job(tenant_a, status=status, error=error)

    response = await client.get(f"/workflows/{job.id}", headers=auth_a)

    assert response.json()["status"] == "failed"
    assert response.json()["error"] == expected
    assert "traceback" not in response.text


async def test_an_output_whose_file_is_gone_has_no_url(
    client, workflow, auth_a, tenant_a
):
    job = workflow.add_job(
        tenant_a,
        status=wf.JOB_STATUS_COMPLETED,
        outputs=[wf.OutputFile(file_id="gone", node_id="9", filename="x.png")],
    )

    body = (await client.get(f"/workflows/{job.id}", headers=auth_a)).json()

    assert body["outputs"][0]["url"] is None


async def test_a_non_uuid_id_is_404_without_calling_anything(client, workflow, auth_a):
    for path in ("/workflows/not-a-uuid", "/workflows/1234/cancel"):
        method = "POST" if path.endswith("cancel") else "GET"
        response = await client.request(method, path, headers=auth_a)
        assert response.status_code == 404
        assert response.json()["error"] == "not_found"
    assert workflow.requests == []


async def test_another_tenants_job_is_404(client, workflow, auth_b, tenant_a):
    job = workflow.add_job(tenant_a)

    get = await client.get(f"/workflows/{job.id}", headers=auth_b)
    cancel = await client.post(f"/workflows/{job.id}/cancel", headers=auth_b)
    events = await client.get(f"/workflows/{job.id}/events", headers=auth_b)
    listed = await client.get("/workflows", headers=auth_b)

    assert get.status_code == cancel.status_code == events.status_code == 404
    missing = await client.get(f"/workflows/{NO_SUCH_JOB}", headers=auth_b)
    assert get.json()["error"] == missing.json()["error"] == "not_found"
    assert listed.json() == {"items": [], "next_cursor": None}
    assert workflow.jobs[job.id].status == wf.JOB_STATUS_PENDING


async def test_list_pages_newest_first(client, workflow, auth_a, tenant_a, tenant_b):
    created = [workflow.add_job(tenant_a).id for _ in range(5)]
    workflow.add_job(tenant_b)

    seen = []
    cursor = None
    pages = 0
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        body = (await client.get("/workflows", headers=auth_a, params=params)).json()
        pages += 1
        seen += [item["execution_id"] for item in body["items"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break

    assert seen == list(reversed(created))
    assert pages == 3
    item = body["items"][0]
    assert (
        item["links"]["self"] == f"http://testserver/workflows/{item['execution_id']}"
    )
    assert "outputs" not in item


async def test_list_filters_by_status_with_failed_including_expired(
    client, workflow, auth_a, tenant_a
):
    failed = workflow.add_job(tenant_a, status=wf.JOB_STATUS_FAILED)
    expired = workflow.add_job(tenant_a, status=wf.JOB_STATUS_EXPIRED)
    workflow.add_job(tenant_a, status=wf.JOB_STATUS_COMPLETED)

    body = (
        await client.get("/workflows", headers=auth_a, params={"status": "failed"})
    ).json()

    assert [item["execution_id"] for item in body["items"]] == [expired.id, failed.id]
    assert {item["status"] for item in body["items"]} == {"failed"}


@pytest.mark.parametrize("status", list(JobStatus))
async def test_every_documented_status_filters(
    client, workflow, auth_a, tenant_a, status
):
    workflow.add_job(tenant_a, status=wf.JOB_STATUS_EXPIRED)

    response = await client.get(
        "/workflows", headers=auth_a, params={"status": status.value}
    )

    assert response.status_code == 200, response.text
    [request] = workflow.requests
    expected = {
        JobStatus.PENDING: [wf.JOB_STATUS_PENDING],
        JobStatus.RUNNING: [wf.JOB_STATUS_RUNNING],
        JobStatus.COMPLETED: [wf.JOB_STATUS_COMPLETED],
        JobStatus.FAILED: [wf.JOB_STATUS_FAILED, wf.JOB_STATUS_EXPIRED],
        JobStatus.CANCELLED: [wf.JOB_STATUS_CANCELLED],
    }[status]
    assert list(request.statuses) == expected
    assert len(response.json()["items"]) == (status == JobStatus.FAILED)


async def test_repeated_statuses_are_sent_once(client, workflow, auth_a):
    response = await client.get(
        "/workflows",
        headers=auth_a,
        params=[("status", "failed"), ("status", "pending"), ("status", "failed")],
    )

    assert response.status_code == 200
    [request] = workflow.requests
    assert list(request.statuses) == [
        wf.JOB_STATUS_PENDING,
        wf.JOB_STATUS_FAILED,
        wf.JOB_STATUS_EXPIRED,
    ]


@pytest.mark.parametrize(
    "params", [{"limit": 0}, {"limit": 101}, {"status": "expired"}]
)
async def test_bad_list_parameters_are_422(client, auth_a, params):
    response = await client.get("/workflows", headers=auth_a, params=params)

    assert response.status_code == 422
    assert response.json()["fields"][0]["field"].startswith("query.")


async def test_cancel_returns_the_job(client, workflow, auth_a, tenant_a):
    job = workflow.add_job(tenant_a)

    response = await client.post(f"/workflows/{job.id}/cancel", headers=auth_a)

    assert response.status_code == 200
    assert response.json()["execution_id"] == job.id
    assert response.json()["status"] == "cancelled"
    assert response.json()["cancel_requested"] is False


async def test_cancelling_a_running_job_answers_running_with_the_cancel_taken(
    client, workflow, auth_a, tenant_a
):
    job = workflow.add_job(tenant_a, status=wf.JOB_STATUS_RUNNING, attempt=1)
    path = f"/workflows/{job.id}"

    before = (await client.get(path, headers=auth_a)).json()
    cancel = await client.post(f"{path}/cancel", headers=auth_a)
    after = (await client.get(path, headers=auth_a)).json()
    listed = (await client.get("/workflows", headers=auth_a)).json()

    assert before["cancel_requested"] is False
    assert cancel.status_code == 200
    assert cancel.json()["status"] == "running"
    assert cancel.json()["cancel_requested"] is True
    assert (after["status"], after["cancel_requested"]) == ("running", True)
    [summary] = listed["items"]
    assert summary["cancel_requested"] is True


def _job_with_outputs(workflow, storage, tenant, count):
    outputs = []
    for index in range(count):
        stored = storage.add_file(tenant, key=f"outputs/{index}.png")
        outputs.append(
            wf.OutputFile(
                file_id=stored.id, node_id="9", index=index, filename=f"{index}.png"
            )
        )
    return workflow.add_job(tenant, status=wf.JOB_STATUS_COMPLETED, outputs=outputs)


@pytest.mark.parametrize("route", ["get", "cancel", "events"])
async def test_a_job_with_more_outputs_than_one_presign_call_gets_every_url(
    client, workflow, storage, auth_a, tenant_a, parse_sse, route
):
    job = _job_with_outputs(workflow, storage, tenant_a, 256)
    path = f"/workflows/{job.id}"

    if route == "get":
        response = await client.get(path, headers=auth_a)
        outputs = response.json()["outputs"]
    elif route == "cancel":
        response = await client.post(f"{path}/cancel", headers=auth_a)
        outputs = response.json()["outputs"]
    else:
        response = await client.get(f"{path}/events", headers=auth_a)
        outputs = [data for name, data in parse_sse(response.text) if name == "output"]

    assert response.status_code == 200
    assert len(outputs) == 256
    assert all(output["url"] for output in outputs)
    assert [len(call.file_ids) for call in storage.download_url_calls] == [200, 56]
