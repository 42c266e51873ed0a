import json

import grpc
import pytest

from comfyserve.contracts.limits import GRPC_MAX_MESSAGE_BYTES, MAX_WORKFLOW_BYTES
from comfyserve.contracts.pb.workflow.v1 import workflow_pb2 as wf

# What grpc.aio says when a message is over its limit: never for a client's eyes.
GRPC_TOO_LARGE = "Sent message larger than max (5000000 vs. 4194304)"


async def test_execute_answers_202_with_absolute_links(
    client, workflow, auth_a, tenant_a, api_workflow
):
    response = await client.post(
        "/workflows/execute",
        headers=auth_a,
        json={
            "workflow": api_workflow,
            "priority": "high",
            "webhook_url": "https://hooks.example.com/done",
            "metadata": {"order": "42"},
            "timeout_minutes": 5,
        },
    )

    assert response.status_code == 202
    body = response.json()
    job_id = body["execution_id"]
    assert body["status"] == "pending"
    assert body["queue_position"] == 0
    assert body["created_at"].startswith("2030-01-01T00:00:01")
    self_url = f"http://testserver/workflows/{job_id}"
    assert body["links"] == {
        "self": self_url,
        "events": f"{self_url}/events",
        "cancel": f"{self_url}/cancel",
    }
    assert response.headers["Location"] == self_url
    assert "Idempotent-Replayed" not in response.headers
    [request] = workflow.requests
    assert request.tenant_id == tenant_a
    assert request.priority == wf.PRIORITY_HIGH
    assert request.timeout_seconds == 300
    assert request.webhook_url == "https://hooks.example.com/done"
    assert dict(request.metadata) == {"order": "42"}
    # Integers stay integers: the graph travels as JSON text.
    assert json.loads(request.workflow_json) == api_workflow
    assert not request.HasField("idempotency_key")


async def test_defaults_are_normal_priority_and_ten_minutes(
    client, workflow, auth_a, api_workflow
):
    response = await client.post(
        "/workflows/execute", headers=auth_a, json={"workflow": api_workflow}
    )

    assert response.status_code == 202
    [request] = workflow.requests
    assert request.priority == wf.PRIORITY_NORMAL
    assert request.timeout_seconds == 600
    assert not request.HasField("webhook_url")


async def test_public_base_url_overrides_the_request_host(
    make_app, settings, serve_app, auth_a, api_workflow
):
    app = make_app(
        settings.model_copy(update={"public_base_url": "https://api.example.com/v1"})
    )
    async with serve_app(app) as client:
        response = await client.post(
            "/workflows/execute", headers=auth_a, json={"workflow": api_workflow}
        )

    job_id = response.json()["execution_id"]
    assert response.json()["links"]["self"] == (
        f"https://api.example.com/v1/workflows/{job_id}"
    )


async def test_a_replay_returns_the_first_job_with_the_replayed_header(
    client, auth_a, api_workflow
):
    request = {"workflow": api_workflow, "metadata": {"a": "b"}}
    headers = {**auth_a, "Idempotency-Key": "order-42"}

    first = await client.post("/workflows/execute", headers=headers, json=request)
    second = await client.post("/workflows/execute", headers=headers, json=request)

    assert first.status_code == second.status_code == 202
    assert second.json() == first.json()
    assert second.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers


async def test_a_reused_key_with_another_body_is_422(client, auth_a, api_workflow):
    headers = {**auth_a, "Idempotency-Key": "order-42"}
    await client.post(
        "/workflows/execute", headers=headers, json={"workflow": api_workflow}
    )

    response = await client.post(
        "/workflows/execute",
        headers=headers,
        json={"workflow": api_workflow, "priority": "low"},
    )

    assert response.status_code == 422
    assert response.json()["error"] == "idempotency_key_reuse"


@pytest.mark.parametrize("key", ["", "x" * 256, "caf\u00e9", "tab\there"])
async def test_a_malformed_idempotency_key_is_400(
    client, workflow, auth_a, api_workflow, key
):
    response = await client.post(
        "/workflows/execute",
        headers={**auth_a, "Idempotency-Key": key.encode()},
        json={"workflow": api_workflow},
    )

    assert response.status_code == 400
    assert response.json()["error"] == "invalid_idempotency_key"
    assert workflow.requests == []


def _validation_errors() -> wf.ValidationErrors:
    errors = wf.ValidationErrors(
        error=wf.ErrorItem(
            type="prompt_outputs_failed_validation",
            message="Prompt outputs failed validation",
        )
    )
    errors.node_errors["1"].CopyFrom(
        wf.NodeError(
            errors=[
                wf.ErrorItem(
                    type="value_bigger_than_max",
                    message="Value 99999 bigger than max of 16384",
                    details="width",
                    extra_info_json='{"input_name": "width", "input_config": [1, 2]}',
                )
            ],
            dependent_outputs=["2"],
            class_type="EmptyImage",
        )
    )
    return errors


async def test_an_invalid_workflow_is_422_in_comfyuis_shape(
    client, workflow, auth_a, api_workflow
):
    workflow.validation_errors = _validation_errors()

    response = await client.post(
        "/workflows/execute", headers=auth_a, json={"workflow": api_workflow}
    )

    assert response.status_code == 422
    assert response.json() == {
        "error": "invalid_workflow",
        "detail": "Prompt outputs failed validation",
        "error_type": "prompt_outputs_failed_validation",
        "node_errors": {
            "1": {
                "errors": [
                    {
                        "type": "value_bigger_than_max",
                        "message": "Value 99999 bigger than max of 16384",
                        "details": "width",
                        "extra_info": {"input_name": "width", "input_config": [1, 2]},
                    }
                ],
                "dependent_outputs": ["2"],
                "class_type": "EmptyImage",
            }
        },
    }


async def test_a_ui_format_workflow_is_422_workflow_format_ui(client, workflow, auth_a):
    workflow.validation_errors = wf.ValidationErrors(
        error=wf.ErrorItem(
            type="workflow_format_ui",
            message="This is a UI workflow; export it with Save (API)",
        )
    )

    response = await client.post(
        "/workflows/execute",
        headers=auth_a,
        json={"workflow": {"nodes": [], "links": []}},
    )

    assert response.status_code == 422
    body = response.json()
    assert body["error"] == "workflow_format_ui"
    assert body["detail"] == "This is a UI workflow; export it with Save (API)"
    assert body["node_errors"] == {}


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"priority": "urgent"}, "body.priority"),
        ({"timeout_minutes": 61}, "body.timeout_minutes"),
        ({"timeout_minutes": 0}, "body.timeout_minutes"),
        ({"webhook_url": "ftp://example.com/x"}, "body.webhook_url"),
        ({"metadata": {f"k{i}": "v" for i in range(17)}}, "body.metadata"),
        ({"metadata": {"k" * 41: "v"}}, f"body.metadata.{'k' * 41}.[key]"),
        ({"metadata": {"k": "v" * 257}}, "body.metadata.k"),
        ({"workflow": {}}, "body.workflow"),
        ({"workflow": [1, 2]}, "body.workflow"),
        ({"surprise": True}, "body.surprise"),
    ],
)
async def test_a_bad_field_is_422_naming_it(
    client, workflow, auth_a, api_workflow, change, field
):
    response = await client.post(
        "/workflows/execute",
        headers=auth_a,
        json={"workflow": api_workflow, **change},
    )

    assert response.status_code == 422
    body = response.json()
    assert body["error"] == "invalid_request"
    assert field in [item["field"] for item in body["fields"]]
    assert workflow.requests == []


async def test_a_body_that_is_not_json_is_422(client, workflow, auth_a):
    response = await client.post(
        "/workflows/execute",
        headers={**auth_a, "Content-Type": "application/json"},
        content=b"{not json",
    )

    assert response.status_code == 422
    assert response.json()["error"] == "invalid_request"
    assert workflow.requests == []


async def test_an_oversized_body_with_content_length_is_413(
    client, workflow, auth_a, settings
):
    body = json.dumps({"workflow": {"1": {"inputs": {"text": "x" * 5000}}}})

    response = await client.post(
        "/workflows/execute",
        headers={**auth_a, "Content-Type": "application/json"},
        content=body.encode(),
    )

    assert response.status_code == 413
    assert response.json()["error"] == "payload_too_large"
    assert response.json()["limit_bytes"] == settings.max_body_bytes
    assert "X-Request-Id" in response.headers
    assert workflow.requests == []


async def test_an_oversized_chunked_body_is_413(client, workflow, auth_a, settings):
    async def chunks():
        yield b'{"workflow": {"1": {"inputs": {"text": "'
        for _ in range(10):
            yield b"x" * 1000
        yield b'"}}}}'

    response = await client.post(
        "/workflows/execute",
        headers={**auth_a, "Content-Type": "application/json"},
        content=chunks(),
    )

    assert response.status_code == 413
    assert response.json()["limit_bytes"] == settings.max_body_bytes
    assert workflow.requests == []


async def test_a_chunked_body_under_the_limit_is_accepted(client, auth_a, api_workflow):
    payload = json.dumps({"workflow": api_workflow}).encode()

    async def chunks():
        yield payload[:10]
        yield payload[10:]

    response = await client.post(
        "/workflows/execute",
        headers={**auth_a, "Content-Type": "application/json"},
        content=chunks(),
    )

    assert response.status_code == 202


@pytest.mark.parametrize(
    ("grpc_code", "status", "code"),
    [
        (grpc.StatusCode.UNAVAILABLE, 503, "service_unavailable"),
        (grpc.StatusCode.DEADLINE_EXCEEDED, 503, "service_unavailable"),
        (grpc.StatusCode.INVALID_ARGUMENT, 400, "invalid_argument"),
        (grpc.StatusCode.FAILED_PRECONDITION, 409, "conflict"),
        (grpc.StatusCode.INTERNAL, 500, "internal_error"),
        (grpc.StatusCode.PERMISSION_DENIED, 500, "internal_error"),
    ],
)
async def test_grpc_statuses_map_to_http(
    client, workflow, auth_a, api_workflow, rpc_error, grpc_code, status, code
):
    workflow.fail_with = rpc_error(grpc_code, "db password is wrong")

    response = await client.post(
        "/workflows/execute", headers=auth_a, json={"workflow": api_workflow}
    )

    assert response.status_code == status
    assert response.json()["error"] == code
    if status == 503:
        assert int(response.headers["Retry-After"]) > 0
    if status in (500, 503):
        assert "password" not in response.text


async def test_invalid_argument_with_field_violations_is_422_with_fields(
    client, workflow, auth_a, api_workflow, rpc_error
):
    workflow.fail_with = rpc_error(
        grpc.StatusCode.INVALID_ARGUMENT,
        "metadata is invalid",
        violations={"metadata": "too many keys"},
    )

    response = await client.post(
        "/workflows/execute", headers=auth_a, json={"workflow": api_workflow}
    )

    assert response.status_code == 422
    assert response.json() == {
        "error": "invalid_argument",
        "detail": "metadata is invalid",
        "fields": [{"field": "metadata", "message": "too many keys"}],
    }


async def test_validate_answers_valid_or_422(client, workflow, auth_a, api_workflow):
    valid = await client.post(
        "/workflows/validate", headers=auth_a, json={"workflow": api_workflow}
    )
    workflow.validation_errors = _validation_errors()
    invalid = await client.post(
        "/workflows/validate", headers=auth_a, json={"workflow": api_workflow}
    )

    assert valid.status_code == 200
    assert valid.json() == {"valid": True}
    assert invalid.status_code == 422
    assert invalid.json()["error"] == "invalid_workflow"
    assert list(invalid.json()["node_errors"]) == ["1"]


async def test_the_graph_travels_as_compact_utf8_no_larger_than_the_body(
    client, workflow, auth_a
):
    text = "日本語のプロンプト" * 50
    body = json.dumps(
        {"workflow": {"1": {"class_type": "CLIPTextEncode", "inputs": {"text": text}}}},
        ensure_ascii=False,
    ).encode()

    response = await client.post(
        "/workflows/execute",
        headers={**auth_a, "Content-Type": "application/json"},
        content=body,
    )

    assert response.status_code == 202
    [request] = workflow.requests
    assert text in request.workflow_json
    assert len(request.workflow_json.encode()) < len(body)


@pytest.mark.parametrize(
    ("method", "route"),
    [
        ("POST", "/workflows/execute"),
        ("POST", "/workflows/validate"),
        ("GET", "/workflows/00000000-0000-4000-8000-000000000000"),
    ],
)
async def test_an_exhausted_call_is_413_with_the_message_limit_not_grpcs_text(
    client, workflow, auth_a, api_workflow, rpc_error, method, route
):
    workflow.fail_with = rpc_error(grpc.StatusCode.RESOURCE_EXHAUSTED, GRPC_TOO_LARGE)

    response = await client.request(
        method,
        route,
        headers=auth_a,
        json={"workflow": api_workflow} if method == "POST" else None,
    )

    assert response.status_code == 413
    body = response.json()
    assert body["error"] == "payload_too_large"
    assert body["limit_bytes"] == GRPC_MAX_MESSAGE_BYTES
    assert "larger than max" not in response.text


async def test_the_limits_are_in_the_openapi_description(client, settings):
    schema = (await client.get("/openapi.json")).json()

    assert str(settings.max_body_bytes) in schema["info"]["description"]
    assert str(MAX_WORKFLOW_BYTES) in schema["info"]["description"]
    execute = schema["paths"]["/workflows/execute"]["post"]
    assert "GATEWAY_MAX_BODY_BYTES" in execute["responses"]["413"]["description"]
