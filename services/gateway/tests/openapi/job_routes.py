"""How to call the job, file and health routes, and their own failures."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import httpx

from comfyserve.contracts.pb.storage.v1 import storage_pb2 as st
from comfyserve.contracts.pb.workflow.v1 import workflow_pb2 as wf

from .env import NO_SUCH_ID, Driver, Env, Route, Send


def _graph() -> dict[str, object]:
    return {"1": {"class_type": "EmptyImage", "inputs": {"width": 64}}}


def _validation_errors(kind: str) -> wf.ValidationErrors:
    return wf.ValidationErrors(
        error=wf.ErrorItem(type=kind, message="Prompt outputs failed validation"),
        node_errors={
            "1": wf.NodeError(
                errors=[
                    wf.ErrorItem(
                        type="value_not_in_list",
                        message="Value not in list",
                        details="width",
                        extra_info_json='{"input_name": "width"}',
                    )
                ],
                dependent_outputs=["1"],
                class_type="EmptyImage",
            )
        },
    )


def _refused_graph(kind: str, path: str) -> Driver:
    async def drive(env: Env) -> httpx.Response:
        env.workflow.validation_errors = _validation_errors(kind)
        return await env.client.post(
            path, headers=env.auth, json={"workflow": _graph()}
        )

    return drive


def _json_route(path: str) -> tuple[Send, dict[str, Sequence[Driver]]]:
    async def send(env: Env, headers: Mapping[str, str]) -> httpx.Response:
        return await env.client.post(path, headers=headers, json={"workflow": _graph()})

    async def too_large(env: Env) -> httpx.Response:
        big = {"workflow": {"1": {"class_type": "x" * 5000}}}
        return await env.client.post(path, headers=env.auth, json=big)

    async def chunked_too_large(env: Env) -> httpx.Response:
        async def body():
            for _ in range(5):
                yield b" " * 1000

        headers = {**env.auth, "Content-Type": "application/json"}
        return await env.client.post(path, headers=headers, content=body())

    async def invalid(env: Env) -> httpx.Response:
        return await env.client.post(path, headers=env.auth, json={"workflow": []})

    async def not_json(env: Env) -> httpx.Response:
        headers = {**env.auth, "Content-Type": "application/json"}
        return await env.client.post(path, headers=headers, content=b"{")

    return send, {
        "body_too_large": [too_large, chunked_too_large],
        "invalid_request": [invalid, not_json],
        "invalid_workflow": [_refused_graph("prompt_outputs_failed_validation", path)],
        "workflow_format_ui": [_refused_graph("workflow_format_ui", path)],
    }


_execute, _execute_scenarios = _json_route("/workflows/execute")
_validate, _validate_scenarios = _json_route("/workflows/validate")


async def _bad_idempotency_key(env: Env) -> httpx.Response:
    headers = {**env.auth, "Idempotency-Key": "k" * 256}
    return await env.client.post(
        "/workflows/execute", headers=headers, json={"workflow": _graph()}
    )


async def _list(env: Env, headers: Mapping[str, str]) -> httpx.Response:
    return await env.client.get("/workflows", headers=headers)


async def _bad_list_parameters(env: Env) -> httpx.Response:
    return await env.client.get(
        "/workflows", headers=env.auth, params={"limit": 0, "status": "expired"}
    )


def _job_route(method: str, suffix: str = "") -> Route:
    async def send(env: Env, headers: Mapping[str, str]) -> httpx.Response:
        path = f"/workflows/{env.job_id}{suffix}"
        return await env.client.request(method, path, headers=headers)

    async def unknown(env: Env) -> httpx.Response:
        path = f"/workflows/{NO_SUCH_ID}{suffix}"
        return await env.client.request(method, path, headers=env.auth)

    async def not_an_id(env: Env) -> httpx.Response:
        path = f"/workflows/not-a-job{suffix}"
        return await env.client.request(method, path, headers=env.auth)

    return Route(send, {"job_not_found": [unknown, not_an_id]})


async def _events(env: Env, headers: Mapping[str, str]) -> httpx.Response:
    # A pending job: its stream is one status, and no output to presign.
    job = env.workflow.add_job(env.tenant)
    return await env.client.get(f"/workflows/{job.id}/events", headers=headers)


async def _upload_file(
    env: Env,
    headers: Mapping[str, str],
    content: bytes = b"hello",
    name: str = "a.txt",
    content_type: str = "text/plain",
    data: dict[str, str] | None = None,
) -> httpx.Response:
    return await env.client.post(
        "/files",
        headers=headers,
        files={"file": (name, content, content_type)},
        data=data,
    )


async def _upload(env: Env, headers: Mapping[str, str]) -> httpx.Response:
    return await _upload_file(env, headers)


async def _malformed_content_type(env: Env) -> httpx.Response:
    return await _upload_file(env, env.auth, data={"content_type": "not a type"})


async def _two_files(env: Env) -> httpx.Response:
    return await env.client.post(
        "/files",
        headers=env.auth,
        files=[("file", ("a.txt", b"a")), ("file", ("b.txt", b"b"))],
    )


async def _multipart_too_large(env: Env) -> httpx.Response:
    return await _upload_file(env, env.auth, b"x" * (320 * 1024 + 1))


async def _file_too_large(env: Env) -> httpx.Response:
    return await _upload_file(env, env.auth, b"x" * (256 * 1024 + 1))


async def _no_file_part(env: Env) -> httpx.Response:
    return await env.client.post(
        "/files", headers=env.auth, data={"content_type": "text/plain"}
    )


async def _empty_file(env: Env) -> httpx.Response:
    return await _upload_file(env, env.auth, b"")


async def _not_a_png(env: Env) -> httpx.Response:
    return await _upload_file(
        env, env.auth, b"GIF89a" + b"\0" * 20, "a.png", "image/png"
    )


async def _refused_by_the_object_store(env: Env) -> httpx.Response:
    env.object_store.refuse = True
    return await _upload_file(env, env.auth)


def _file_route(suffix: str = "") -> Route:
    async def send(env: Env, headers: Mapping[str, str]) -> httpx.Response:
        return await env.client.get(f"/files/{env.file_id}{suffix}", headers=headers)

    async def unknown(env: Env) -> httpx.Response:
        return await env.client.get(f"/files/{NO_SUCH_ID}{suffix}", headers=env.auth)

    async def not_an_id(env: Env) -> httpx.Response:
        return await env.client.get(f"/files/not-a-file{suffix}", headers=env.auth)

    return Route(send, {"file_not_found": [unknown, not_an_id]})


async def _pending_file_content(env: Env) -> httpx.Response:
    pending = env.storage.add_file(env.tenant, state=st.FILE_STATE_PENDING)
    return await env.client.get(f"/files/{pending.id}/content", headers=env.auth)


async def _live(env: Env, headers: Mapping[str, str]) -> httpx.Response:
    return await env.client.get("/health/live")


async def _ready(env: Env, headers: Mapping[str, str]) -> httpx.Response:
    return await env.client.get("/health/ready")


async def _redis_down(env: Env) -> httpx.Response:
    env.probes[2].healthy = False
    return await env.client.get("/health/ready")


_content = _file_route("/content")

JOB_ROUTES: dict[tuple[str, str], Route] = {
    ("POST", "/workflows/execute"): Route(
        _execute,
        {**_execute_scenarios, "invalid_idempotency_key": [_bad_idempotency_key]},
    ),
    ("POST", "/workflows/validate"): Route(_validate, _validate_scenarios),
    ("GET", "/workflows"): Route(_list, {"invalid_request": [_bad_list_parameters]}),
    ("GET", "/workflows/{execution_id}"): _job_route("GET"),
    ("POST", "/workflows/{execution_id}/cancel"): _job_route("POST", "/cancel"),
    ("GET", "/workflows/{execution_id}/events"): Route(
        _events, _job_route("GET", "/events").scenarios
    ),
    ("POST", "/files"): Route(
        _upload,
        {
            "malformed_upload": [_malformed_content_type, _two_files],
            "multipart_too_large": [_multipart_too_large],
            "file_too_large": [_file_too_large],
            "no_file_part": [_no_file_part],
            "empty_file": [_empty_file],
            "content_type_mismatch": [_not_a_png],
            "upload_failed": [_refused_by_the_object_store],
        },
    ),
    ("GET", "/files/{file_id}"): _file_route(),
    ("GET", "/files/{file_id}/content"): Route(
        _content.send,
        {**_content.scenarios, "file_not_ready": [_pending_file_content]},
    ),
    ("GET", "/health/live"): Route(_live, public=True),
    ("GET", "/health/ready"): Route(_ready, {"not_ready": [_redis_down]}, public=True),
}
