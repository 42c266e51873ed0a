"""v2 job routes over the workflow fake: submit, get, list, cancel, workflow and
logs, in the shapes the SDK validates and the v2 error envelope."""

import json
from datetime import datetime

import grpc
import pytest

from comfyserve.contracts.pb.workflow.v1 import workflow_pb2 as wf

JOB_KEYS = {
    "id",
    "status",
    "created_at",
    "started_at",
    "completed_at",
    "expires_at",
    "queue_position",
    "progress",
    "outputs",
    "error",
    "urls",
}
JOB_ORDER = [
    "id",
    "status",
    "created_at",
    "started_at",
    "completed_at",
    "expires_at",
    "queue_position",
    "progress",
    "outputs",
    "error",
    "urls",
]
OUTPUT_KEYS = {
    "node_id",
    "name",
    "type",
    "content_type",
    "size_bytes",
    "id",
    "hash",
    "url",
    "url_expires_at",
}
UNKNOWN_JOB = "00000000-0000-4000-8000-000000000000"


def aware(value: str) -> datetime:
    moment = datetime.fromisoformat(value)
    assert moment.tzinfo is not None, value
    return moment


def assert_envelope(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str)
    assert body["error"]["message"]
    return body["error"]


def validation_errors() -> wf.ValidationErrors:
    errors = wf.ValidationErrors(
        error=wf.ErrorItem(
            type="prompt_outputs_failed_validation",
            message="Prompt outputs failed validation",
        )
    )
    errors.node_errors["3"].class_type = "KSampler"
    errors.node_errors["3"].dependent_outputs.append("9")
    errors.node_errors["3"].errors.append(
        wf.ErrorItem(
            type="value_not_in_list",
            message="Value not in list",
            details="ckpt_name: 'x' not in []",
            extra_info_json='{"input_name": "ckpt_name"}',
        )
    )
    return errors


def output_file(file_id: str, index: int = 0) -> wf.OutputFile:
    return wf.OutputFile(
        file_id=file_id,
        node_id="9",
        index=index,
        filename=f"ComfyUI_{index:05}_.png",
        kind=wf.OUTPUT_KIND_IMAGE,
        content_type="image/png",
        size=528,
    )


async def submit(client, headers, body, key: str | None = None):
    if key is not None:
        headers = {**headers, "Idempotency-Key": key}
    return await client.post("/api/v2/jobs", headers=headers, json=body)


# Submit


async def test_a_submit_is_201_with_the_complete_queued_job(
    client, workflow, auth_a, tenant_a, api_workflow
) -> None:
    response = await submit(
        client, auth_a, {"workflow": api_workflow, "metadata": {"client": "acme"}}
    )

    assert response.status_code == 201
    job = response.json()
    # The fields in the order of the contract's examples (§A.4.6).
    assert list(job)[: len(JOB_ORDER)] == JOB_ORDER
    assert job["status"] == "queued"
    assert (job["started_at"], job["completed_at"]) == (None, None)
    assert (job["progress"], job["error"], job["outputs"]) == (None, None, [])
    assert aware(job["expires_at"]) > aware(job["created_at"])
    assert job["metadata"] == {"client": "acme"}
    url = f"http://testserver/api/v2/jobs/{job['id']}"
    assert job["urls"] == {
        "self": url,
        "events": f"{url}/events",
        "cancel": f"{url}/cancel",
    }
    assert response.headers["Location"] == url
    assert response.headers["X-Comfy-Request-Id"]
    [request] = workflow.requests
    assert request.tenant_id == tenant_a
    assert dict(request.metadata) == {"client": "acme"}


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (b"{not json", 400, "invalid_request"),
        (b"[1, 2]", 400, "invalid_request"),
        (b"{}", 422, "invalid_workflow"),
        (b'{"workflow": "graph"}', 422, "invalid_workflow"),
        (b'{"workflow": {"nodes": [], "links": []}}', 422, "workflow_format_ui"),
        (
            b'{"workflow": {"1": {}}, "webhook_url": "http://x"}',
            422,
            "invalid_workflow",
        ),
        (
            b'{"workflow": {"1": {}}, "extra_data": {"other": "x"}}',
            400,
            "invalid_request",
        ),
        (b'{"workflow": {"1": {}}, "metadata": {"k": 1}}', 422, "metadata_invalid"),
    ],
)
async def test_the_body_is_checked_before_the_key_in_the_order_of_the_contract(
    client, workflow, idempotency, auth_a, body, status, code
) -> None:
    # An empty key is a fault too, but the body's comes first (§A.3.1).
    headers = {**auth_a, "Idempotency-Key": "", "Content-Type": "application/json"}

    response = await client.post("/api/v2/jobs", headers=headers, content=body)

    assert_envelope(response, status, code)
    assert workflow.requests == []
    assert idempotency.claimed == set()


@pytest.mark.parametrize("key", ["", "x" * 256, "caf\u00e9", "tab\there"])
async def test_a_malformed_idempotency_key_is_400_and_submits_nothing(
    client, workflow, auth_a, api_workflow, key
) -> None:
    headers = {**auth_a, "Idempotency-Key": key}

    response = await client.post(
        "/api/v2/jobs",
        headers={name: value.encode() for name, value in headers.items()},
        json={"workflow": api_workflow},
    )

    error = assert_envelope(response, 400, "invalid_request")
    assert "Idempotency-Key" in error["message"]
    assert workflow.requests == []


async def test_an_idempotency_key_is_single_use_per_tenant(
    client, workflow, auth_a, auth_b, api_workflow
) -> None:
    body = {"workflow": api_workflow}

    first = await submit(client, auth_a, body, key="k-1")
    again = await submit(client, auth_a, body, key="k-1")
    other_tenant = await submit(client, auth_b, body, key="k-1")

    assert first.status_code == 201
    assert_envelope(again, 422, "idempotency_key_reuse")
    assert other_tenant.status_code == 201
    assert workflow.calls.count("submit_job") == 2


async def test_an_invalid_workflow_is_422_with_native_node_errors_and_frees_the_key(
    client, workflow, idempotency, auth_a, tenant_a, api_workflow
) -> None:
    workflow.validation_errors = validation_errors()

    refused = await submit(client, auth_a, {"workflow": api_workflow}, key="k-2")
    workflow.validation_errors = None
    retried = await submit(client, auth_a, {"workflow": api_workflow}, key="k-2")

    error = assert_envelope(refused, 422, "invalid_workflow")
    assert error["message"] == "Prompt outputs failed validation"
    assert error["details"]["node_errors"] == {
        "3": {
            "errors": [
                {
                    "type": "value_not_in_list",
                    "message": "Value not in list",
                    "details": "ckpt_name: 'x' not in []",
                    "extra_info": {"input_name": "ckpt_name"},
                }
            ],
            "dependent_outputs": ["9"],
            "class_type": "KSampler",
        }
    }
    assert idempotency.released == [(tenant_a, "k-2")]
    assert retried.status_code == 201


async def test_a_missing_asset_is_422_naming_every_id_and_frees_the_key(
    client, workflow, idempotency, auth_a, tenant_a, api_workflow
) -> None:
    errors = wf.ValidationErrors(
        error=wf.ErrorItem(type="missing_asset", message="Assets missing")
    )
    for node_id, file_id in (("1", "a-1"), ("2", "a-2"), ("3", "a-1")):
        errors.node_errors[node_id].errors.append(
            wf.ErrorItem(
                type="missing_asset", extra_info_json=f'{{"file_id": "{file_id}"}}'
            )
        )
    workflow.validation_errors = errors

    response = await submit(client, auth_a, {"workflow": api_workflow}, key="k-3")

    error = assert_envelope(response, 422, "missing_asset")
    # Each id once, in no promised order: the node errors are a map.
    assert sorted(error["details"]["missing_ids"]) == ["a-1", "a-2"]
    assert len(error["details"]["missing_ids"]) == 2
    assert idempotency.released == [(tenant_a, "k-3")]


async def test_a_full_queue_is_429_with_retry_after_and_frees_the_key(
    client, workflow, idempotency, auth_a, tenant_a, api_workflow, rpc_error
) -> None:
    workflow.failures["submit_job"] = rpc_error(
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        "queue full",
        reason="queue_full",
        retry_after_s=3,
    )

    response = await submit(client, auth_a, {"workflow": api_workflow}, key="k-4")

    assert_envelope(response, 429, "queue_full")
    assert response.headers["Retry-After"] == "3"
    assert idempotency.released == [(tenant_a, "k-4")]
    assert idempotency.claimed == set()


@pytest.mark.parametrize(
    "code", [grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED]
)
async def test_an_unknown_outcome_keeps_the_key_so_a_retry_cannot_run_twice(
    client, workflow, idempotency, auth_a, api_workflow, rpc_error, code
) -> None:
    workflow.failures["submit_job"] = rpc_error(code, "no answer")

    first = await submit(client, auth_a, {"workflow": api_workflow}, key="k-5")
    del workflow.failures["submit_job"]
    retried = await submit(client, auth_a, {"workflow": api_workflow}, key="k-5")

    assert_envelope(first, 503, "upstream_unreachable")
    assert_envelope(retried, 422, "idempotency_key_reuse")
    assert idempotency.released == []


async def test_claims_unavailable_is_503_and_submits_nothing(
    client, workflow, idempotency, auth_a, api_workflow
) -> None:
    idempotency.available = False

    response = await submit(client, auth_a, {"workflow": api_workflow}, key="k-6")

    assert_envelope(response, 503, "upstream_unreachable")
    assert workflow.requests == []


async def test_a_key_without_write_scope_is_403_in_the_envelope(
    client, auth_no_scopes, api_workflow
) -> None:
    response = await submit(client, auth_no_scopes, {"workflow": api_workflow})

    assert_envelope(response, 403, "forbidden")


async def test_no_credentials_is_401_unauthorized_but_health_is_open(client) -> None:
    refused = await client.get(f"/api/v2/jobs/{UNKNOWN_JOB}")
    health = await client.get("/api/v2/health")

    assert_envelope(refused, 401, "unauthorized")
    assert health.status_code == 200
    assert health.json() == {"status": "healthy"}


# Get


async def test_a_running_job_has_every_nullable_field_and_its_progress(
    client, workflow, auth_a, tenant_a
) -> None:
    job = workflow.add_job(
        tenant_a,
        status=wf.JOB_STATUS_RUNNING,
        progress=wf.Progress(
            node_id="3",
            class_type="KSampler",
            step=12,
            max=20,
            fraction=0.42,
            nodes_done=1,
            nodes_total=3,
        ),
    )

    response = await client.get(f"/api/v2/jobs/{job.id}", headers=auth_a)

    body = response.json()
    assert response.status_code == 200
    assert JOB_KEYS <= body.keys()
    assert body["status"] == "running"
    assert body["queue_position"] is None
    # No start time recorded yet still reads as started, as the SDK requires.
    assert aware(body["started_at"]) == aware(body["created_at"])
    assert body["completed_at"] is None
    assert body["progress"] == {
        "value": 0.42,
        "nodes_done": 1,
        "nodes_total": 3,
        "current_node": "3",
        "current_node_class": "KSampler",
        "step": 12,
        "steps": 20,
        "message": "KSampler 12/20",
    }


async def test_a_succeeded_job_lists_each_output_once_with_absolute_urls(
    client, workflow, auth_a, tenant_a
) -> None:
    first, second = output_file("f-1", 0), output_file("f-2", 1)
    job = workflow.add_job(
        tenant_a, status=wf.JOB_STATUS_COMPLETED, outputs=[first, second, first]
    )

    body = (await client.get(f"/api/v2/jobs/{job.id}", headers=auth_a)).json()

    assert body["status"] == "succeeded"
    assert body["error"] is None
    assert aware(body["completed_at"])
    assert [output["id"] for output in body["outputs"]] == ["f-1", "f-2"]
    output = body["outputs"][0]
    assert OUTPUT_KEYS <= output.keys()
    assert output["url"] == "http://testserver/api/v2/assets/f-1/content"
    assert aware(output["url_expires_at"]) == aware(body["expires_at"])
    assert (output["type"], output["size_bytes"], output["hash"]) == (
        "image",
        528,
        None,
    )
    assert output["job_id"] == job.id


async def test_a_failed_job_carries_its_error(
    client, workflow, auth_a, tenant_a
) -> None:
    job = workflow.add_job(
        tenant_a,
        status=wf.JOB_STATUS_FAILED,
        error=wf.JobError(
            code="node_execution_error",
            message="boom",
            node_id="3",
            class_type="KSampler",
            traceback="Traceback ...",
        ),
    )

    body = (await client.get(f"/api/v2/jobs/{job.id}", headers=auth_a)).json()

    assert body["status"] == "failed"
    assert aware(body["completed_at"])
    assert body["error"] == {
        "code": "node_execution_error",
        "message": "boom",
        "node_id": "3",
        "class_type": "KSampler",
        "traceback": "Traceback ...",
    }


async def test_an_expired_job_reads_as_expired_with_an_error(
    client, workflow, auth_a, tenant_a
) -> None:
    job = workflow.add_job(tenant_a, status=wf.JOB_STATUS_EXPIRED)

    body = (await client.get(f"/api/v2/jobs/{job.id}", headers=auth_a)).json()

    assert body["status"] == "expired"
    assert aware(body["completed_at"])
    assert body["error"]["code"] == "expired"


@pytest.mark.parametrize("job_id", [UNKNOWN_JOB, "not-a-uuid"])
async def test_an_unknown_or_malformed_id_is_404(client, auth_a, job_id) -> None:
    response = await client.get(f"/api/v2/jobs/{job_id}", headers=auth_a)

    assert_envelope(response, 404, "not_found")


async def test_another_tenants_job_is_404(client, workflow, auth_b, tenant_a) -> None:
    job = workflow.add_job(tenant_a)

    response = await client.get(f"/api/v2/jobs/{job.id}", headers=auth_b)

    assert_envelope(response, 404, "not_found")


async def test_urls_follow_the_public_base_url_and_its_path_prefix(
    make_app, settings, serve_app, workflow, auth_a, tenant_a, api_workflow
) -> None:
    public = settings.model_copy(
        update={"public_base_url": "https://edge.example/deploy/abc/"}
    )
    job = workflow.add_job(
        tenant_a, status=wf.JOB_STATUS_COMPLETED, outputs=[output_file("f-1")]
    )

    async with serve_app(make_app(public)) as client:
        read = (await client.get(f"/api/v2/jobs/{job.id}", headers=auth_a)).json()
        created = await submit(client, auth_a, {"workflow": api_workflow})

    base = "https://edge.example/deploy/abc/api/v2"
    assert read["urls"]["self"] == f"{base}/jobs/{job.id}"
    assert read["urls"]["events"] == f"{base}/jobs/{job.id}/events"
    assert read["urls"]["cancel"] == f"{base}/jobs/{job.id}/cancel"
    assert read["outputs"][0]["url"] == f"{base}/assets/f-1/content"
    assert created.headers["Location"] == f"{base}/jobs/{created.json()['id']}"


async def test_urls_carry_the_root_path_of_a_proxy_without_a_public_base_url(
    make_app, settings, serve_app, workflow, auth_a, tenant_a
) -> None:
    job = workflow.add_job(tenant_a)
    app = make_app(settings)
    app.root_path = "/deploy/abc"

    async with serve_app(app) as client:
        body = (await client.get(f"/api/v2/jobs/{job.id}", headers=auth_a)).json()

    assert body["urls"]["self"] == (
        f"http://testserver/deploy/abc/api/v2/jobs/{job.id}"
    )


# List


async def test_the_list_pages_newest_first_by_cursor_until_it_ends(
    client, workflow, auth_a, auth_b, tenant_a, tenant_b
) -> None:
    ids = [workflow.add_job(tenant_a).id for _ in range(5)]
    workflow.add_job(tenant_b)

    seen, cursor, pages = [], None, 0
    while True:
        params = {"limit": "2", **({"cursor": cursor} if cursor else {})}
        response = await client.get("/api/v2/jobs", headers=auth_a, params=params)
        assert response.status_code == 200
        page = response.json()
        pages += 1
        seen += [item["id"] for item in page["jobs"]]
        cursor = page.get("next_cursor")
        if cursor is None:
            # The last page leaves the cursor out, as the SDK stops on absence.
            assert "next_cursor" not in page
            break

    assert seen == ids[::-1]
    assert pages == 3
    item = (await client.get("/api/v2/jobs", headers=auth_a)).json()["jobs"][0]
    assert set(item) == {"id", "status", "create_time", "update_time", "metadata"}
    assert aware(item["create_time"]) <= aware(item["update_time"])


async def test_the_list_filters_by_status(client, workflow, auth_a, tenant_a) -> None:
    workflow.add_job(tenant_a)
    done = workflow.add_job(tenant_a, status=wf.JOB_STATUS_COMPLETED)
    failed = workflow.add_job(tenant_a, status=wf.JOB_STATUS_FAILED)

    response = await client.get(
        "/api/v2/jobs", headers=auth_a, params={"status": "succeeded, failed"}
    )

    assert [item["id"] for item in response.json()["jobs"]] == [failed.id, done.id]
    [request] = [r for r in workflow.requests if isinstance(r, wf.ListJobsRequest)]
    assert list(request.statuses) == [wf.JOB_STATUS_COMPLETED, wf.JOB_STATUS_FAILED]


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"limit": "0"}, "invalid_request"),
        ({"limit": "101"}, "invalid_request"),
        ({"limit": "ten"}, "invalid_request"),
        ({"status": "queued,done"}, "invalid_request"),
        ({"cursor": "not-ours"}, "invalid_cursor"),
    ],
)
async def test_a_bad_list_query_is_400(client, auth_a, params, code) -> None:
    response = await client.get("/api/v2/jobs", headers=auth_a, params=params)

    assert_envelope(response, 400, code)


# Cancel


async def test_cancelling_a_running_job_reads_canceling_until_it_lands(
    client, workflow, auth_a, tenant_a
) -> None:
    job = workflow.add_job(tenant_a, status=wf.JOB_STATUS_RUNNING)
    url = f"/api/v2/jobs/{job.id}/cancel"

    first = await client.post(url, headers=auth_a)
    again = await client.post(url, headers=auth_a)
    workflow.jobs[job.id].status = wf.JOB_STATUS_CANCELLED
    landed = await client.get(f"/api/v2/jobs/{job.id}", headers=auth_a)
    after = await client.post(url, headers=auth_a)

    assert (first.status_code, again.status_code) == (200, 200)
    assert first.json()["status"] == again.json()["status"] == "canceling"
    assert first.json()["completed_at"] is None
    assert landed.json()["status"] == after.json()["status"] == "canceled"
    assert aware(after.json()["completed_at"])


async def test_cancelling_a_queued_job_is_canceled_at_once(
    client, workflow, auth_a, tenant_a
) -> None:
    job = workflow.add_job(tenant_a, queue_position=1)

    response = await client.post(f"/api/v2/jobs/{job.id}/cancel", headers=auth_a)

    assert response.status_code == 200
    assert response.json()["status"] == "canceled"
    assert response.json()["queue_position"] is None


async def test_cancelling_a_finished_job_leaves_it_as_it_ended(
    client, workflow, auth_a, tenant_a
) -> None:
    job = workflow.add_job(tenant_a, status=wf.JOB_STATUS_COMPLETED)

    response = await client.post(f"/api/v2/jobs/{job.id}/cancel", headers=auth_a)

    assert response.json()["status"] == "succeeded"


async def test_cancelling_an_unknown_job_is_404(client, auth_a) -> None:
    response = await client.post(f"/api/v2/jobs/{UNKNOWN_JOB}/cancel", headers=auth_a)

    assert_envelope(response, 404, "not_found")


# Workflow and logs


async def test_the_workflow_is_the_graph_with_assets_as_file_names(
    client, workflow, storage, auth_a, tenant_a
) -> None:
    upload = storage.add_file(tenant_a, filename="photo.png", path="sub/photo.png")
    graph = {
        "10": {
            "class_type": "LoadImage",
            "inputs": {"image": {"__type": "core/ASSET", "info": {"id": upload.id}}},
        },
        "11": {
            "class_type": "LoadImage",
            "inputs": {"image": {"__type": "core/ASSET", "info": {"id": "gone"}}},
        },
    }
    job = workflow.add_job(tenant_a, workflow_json=json.dumps(graph))

    response = await client.get(f"/api/v2/jobs/{job.id}/workflow", headers=auth_a)

    assert response.status_code == 200
    assert response.json() == {
        "workflow": {
            "10": {"class_type": "LoadImage", "inputs": {"image": "sub/photo.png"}},
            # A file retention removed leaves its id, and the graph readable.
            "11": {"class_type": "LoadImage", "inputs": {"image": "gone"}},
        },
        "format": "api",
    }


async def test_a_workflow_no_longer_kept_is_404(
    client, workflow, auth_a, tenant_a
) -> None:
    job = workflow.add_job(tenant_a)

    response = await client.get(f"/api/v2/jobs/{job.id}/workflow", headers=auth_a)

    assert_envelope(response, 404, "not_found")


async def test_logs_are_204_for_own_jobs_and_404_for_others(
    client, workflow, auth_a, auth_b, tenant_a
) -> None:
    job = workflow.add_job(tenant_a)

    own = await client.get(f"/api/v2/jobs/{job.id}/logs", headers=auth_a)
    other = await client.get(f"/api/v2/jobs/{job.id}/logs", headers=auth_b)

    assert own.status_code == 204
    assert own.content == b""
    assert_envelope(other, 404, "not_found")


async def test_a_server_fault_is_upstream_error_with_no_internal_name(
    client, workflow, auth_a, tenant_a, rpc_error
) -> None:
    job = workflow.add_job(tenant_a)
    workflow.failures["get_job"] = rpc_error(grpc.StatusCode.INTERNAL, "db exploded")

    response = await client.get(f"/api/v2/jobs/{job.id}", headers=auth_a)

    error = assert_envelope(response, 500, "upstream_error")
    assert "db exploded" not in response.text
    assert error["details"] is None
