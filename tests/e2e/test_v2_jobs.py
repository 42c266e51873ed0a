"""Comfy API v2 jobs against the whole product (API.md Part C.1), driven by
the real comfy-sdk 0.5.0 where the scenario says SDK, raw HTTP elsewhere."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import httpx
import pytest

from tests.e2e.comfy_sdk import run_sdk
from tests.e2e.support import Product, invert_graph, slow_graph, submit

pytestmark = [pytest.mark.e2e]

V2_STATUSES = {
    "queued",
    "running",
    "succeeded",
    "canceling",
    "canceled",
    "failed",
    "expired",
}
TERMINAL = {"succeeded", "canceled", "failed", "expired"}
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

_SDK_PRELUDE = """
import json
from comfy_sdk import Comfy
from comfy_sdk.exceptions import ComfyError
client = Comfy()
"""


def _aware(value: str) -> bool:
    return datetime.fromisoformat(value).tzinfo is not None


def _graph_literal(graph: dict[str, Any]) -> str:
    return json.dumps(json.dumps(graph))


async def _submit(client: httpx.AsyncClient, graph: dict[str, Any]) -> dict[str, Any]:
    response = await client.post("/api/v2/jobs", json={"workflow": graph})
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def _poll(
    client: httpx.AsyncClient, url: str, until: set[str], limit_s: float = 180
) -> list[dict[str, Any]]:
    """Every body seen while polling `url` until its status is in `until`."""
    seen: list[dict[str, Any]] = []
    async with asyncio.timeout(limit_s):
        while True:
            response = await client.get(url)
            assert response.status_code == 200, response.text
            seen.append(response.json())
            if seen[-1]["status"] in until:
                return seen
            await asyncio.sleep(0.2)


async def _frames(response: httpx.Response) -> AsyncIterator[tuple[str, str]]:
    """(field, value) pairs of an event stream, a blank line as ("", "")."""
    async for line in response.aiter_lines():
        if not line:
            yield "", ""
        elif line.startswith(":"):
            yield "comment", line[1:].strip()
        else:
            name, _, value = line.partition(":")
            yield name, value.strip()


async def _events(response: httpx.Response) -> list[dict[str, Any]]:
    """Every event (with its id, if any) until the stream closes."""
    events: list[dict[str, Any]] = []
    current: dict[str, Any] = {}
    async for name, value in _frames(response):
        if name in ("event", "data", "id"):
            current[name] = value
        elif name == "" and current:
            current["data"] = json.loads(current["data"])
            events.append(current)
            current = {}
    return events


async def _key_of_a_new_tenant(product: Product) -> str:
    """An API key of a tenant signed up just now, so it has no job but the
    test's: tenant A is every e2e test's, and some (Kafka commands, fault
    tests) leave jobs that appear after the test's own."""
    email = f"v2-{uuid.uuid4().hex[:10]}@example.com"
    password = "correct horse battery staple"
    async with httpx.AsyncClient(base_url=product.base_url, timeout=30) as anonymous:
        registered = await anonymous.post(
            "/auth/register", json={"email": email, "password": password}
        )
        assert registered.status_code == 201, registered.text
        tokens = await anonymous.post(
            "/auth/token", data={"username": email, "password": password}
        )
        assert tokens.status_code == 200, tokens.text
    async with product.client(tokens.json()["access_token"]) as user:
        created = await user.post(
            "/auth/api-keys",
            json={"name": "v2-list", "scopes": ["workflows:read", "workflows:write"]},
        )
    assert created.status_code == 201, created.text
    secret: str = created.json()["secret"]
    return secret


async def test_sdk_run_downloads_the_png_and_reads_the_workflow(
    product: Product,
) -> None:
    """C.1 1 and 21: run() succeeds, the output is a PNG, the workflow is API."""
    graph = invert_graph((10, 20, 30), prefix="v2sdk")
    result = run_sdk(
        product,
        _SDK_PRELUDE
        + f"""
job = client.run(client.workflows.from_json(json.loads({_graph_literal(graph)})))
data = job.get_outputs("3")[0].to_bytes()
workflow = job.get_workflow()
print(json.dumps({{"status": job.status, "head": data[:4].hex(),
                  "format": workflow.format, "graph": workflow.graph}}))
""",
    )

    assert result["status"] == "succeeded"
    assert bytes.fromhex(result["head"]) == b"\x89PNG"
    assert result["format"] == "api"
    assert result["graph"] == graph


async def test_raw_submit_answers_201_and_polling_reaches_a_stable_end(
    product: Product,
) -> None:
    """C.1 2 and 3: 201 with every key, tz-aware times, absolute URLs."""
    async with product.client() as client:
        response = await client.post(
            "/api/v2/jobs",
            json={"workflow": invert_graph((1, 2, 3)), "metadata": {"run": "c2"}},
        )
        assert response.status_code == 201, response.text
        assert response.headers["X-Comfy-Request-Id"]
        job = response.json()
        assert JOB_KEYS <= job.keys()
        assert job["metadata"] == {"run": "c2"}
        assert all(_aware(job[key]) for key in ("created_at", "expires_at"))
        assert job["urls"]["self"].startswith(product.base_url)

        seen = await _poll(client, job["urls"]["self"], TERMINAL)
        again = (await client.get(job["urls"]["self"])).json()

    assert {body["status"] for body in seen} <= V2_STATUSES
    for body in seen:
        assert (body["queue_position"] is not None) == (body["status"] == "queued")
    final = seen[-1]
    assert final["status"] == "succeeded"
    assert _aware(final["completed_at"])
    assert _aware(final["started_at"])
    assert final == again
    (output,) = final["outputs"]
    assert OUTPUT_KEYS <= output.keys()
    assert output["node_id"] == "3"
    assert output["type"] == "image"
    assert output["url"].startswith(f"{product.base_url}/api/v2/assets/")
    assert _aware(output["url_expires_at"])


async def test_sdk_sees_invalid_and_ui_workflows_refused(product: Product) -> None:
    """C.1 10 (SDK InvalidWorkflow with ComfyUI's node_errors) and 11."""
    graph = invert_graph((0, 0, 0))
    graph["1"]["inputs"]["width"] = -1
    result = run_sdk(
        product,
        _SDK_PRELUDE
        + f"""
from comfy_sdk.exceptions import InvalidWorkflow
try:
    client.submit(client.workflows.from_json(json.loads({_graph_literal(graph)})))
except InvalidWorkflow as error:
    print(json.dumps({{"code": error.code, "details": error.details}}))
""",
    )
    assert result["code"] == "invalid_workflow"
    assert result["details"]["node_errors"]["1"]["errors"][0]["type"] == (
        "value_smaller_than_min"
    )

    ui_export = {"last_node_id": 1, "nodes": [{"id": 1}], "links": []}
    async with product.client() as client:
        response = await client.post("/api/v2/jobs", json={"workflow": ui_export})
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "workflow_format_ui"


async def test_an_idempotency_key_is_single_use_but_released_on_refusal(
    product: Product,
) -> None:
    """C.1 12: 201 then 422 reuse (SDK); after 422 invalid_workflow, reusable."""
    key = str(uuid.uuid4())
    graph = invert_graph((4, 5, 6))
    result = run_sdk(
        product,
        _SDK_PRELUDE
        + f"""
from comfy_sdk.exceptions import IdempotencyKeyReuse
workflow = client.workflows.from_json(json.loads({_graph_literal(graph)}))
first = client.submit(workflow, idempotency_key="{key}")
try:
    client.submit(workflow, idempotency_key="{key}")
    second = "accepted"
except IdempotencyKeyReuse as error:
    second = error.code
print(json.dumps({{"first": first.status, "second": second}}))
""",
    )
    assert result["first"] in V2_STATUSES
    assert result["second"] == "idempotency_key_reuse"

    bad = invert_graph((4, 5, 6))
    bad["1"]["inputs"]["width"] = -1
    reused = {"Idempotency-Key": str(uuid.uuid4())}
    async with product.client() as client:
        refused = await client.post(
            "/api/v2/jobs", json={"workflow": bad}, headers=reused
        )
        accepted = await client.post(
            "/api/v2/jobs", json={"workflow": graph}, headers=reused
        )
        empty = await client.post(
            "/api/v2/jobs", json={"workflow": graph}, headers={"Idempotency-Key": ""}
        )
    assert refused.status_code == 422
    assert refused.json()["error"]["code"] == "invalid_workflow"
    assert accepted.status_code == 201, accepted.text
    assert empty.status_code == 400
    assert empty.json()["error"]["code"] == "invalid_request"


async def test_sdk_raises_job_failed_for_a_node_runtime_error(
    product: Product,
) -> None:
    """C.1 14. API.md's `SaveImage(filename_prefix="../x")` is refused here at
    validation already, so the runtime failure is a scale to zero pixels."""
    graph = invert_graph((7, 8, 9))
    graph["2"] = {
        "class_type": "ImageScaleBy",
        "inputs": {
            "image": ["1", 0],
            "upscale_method": "nearest-exact",
            "scale_by": 0.01,
        },
    }
    # The newest job is read back: a tenant of its own, so it is this one.
    key = await _key_of_a_new_tenant(product)
    result = run_sdk(
        product,
        _SDK_PRELUDE
        + f"""
from comfy_sdk.exceptions import JobFailed
try:
    client.run(client.workflows.from_json(json.loads({_graph_literal(graph)})))
    print(json.dumps({{"raised": False}}))
except JobFailed as failed:
    print(json.dumps({{"raised": True, "code": failed.error.code,
                      "node_id": failed.error.node_id}}))
""",
        key=key,
    )
    assert result == {"raised": True, "code": "node_execution_error", "node_id": "2"}
    async with product.client(key) as client:
        page = (await client.get("/api/v2/jobs", params={"limit": "1"})).json()
        job = (await client.get(f"/api/v2/jobs/{page['jobs'][0]['id']}")).json()
    assert job["status"] == "failed"
    assert job["error"]["class_type"] == "ImageScaleBy"


async def test_sdk_cancel_of_running_queued_ended_and_unknown_jobs(
    product: Product,
) -> None:
    """C.1 15: running → canceling → canceled; queued → canceled at once;
    succeeded unchanged; an unknown UUID is NotFound."""
    async with product.client() as client:
        done = await _submit(client, invert_graph((9, 9, 9)))
        await _poll(client, done["urls"]["self"], TERMINAL)
        running = await _submit(client, slow_graph(6, 11))
        queued = await _submit(client, slow_graph(6, 12))
        await _poll(client, running["urls"]["self"], {"running"})

    result = run_sdk(
        product,
        _SDK_PRELUDE
        + f"""
from comfy_sdk.exceptions import NotFound
running = client.jobs.get("{running["id"]}").cancel()
queued = client.jobs.get("{queued["id"]}").cancel()
done = client.jobs.get("{done["id"]}").cancel()
try:
    client.jobs.get("{uuid.uuid4()}")
    unknown = "found"
except NotFound as error:
    unknown = error.code
final = client.jobs.get("{running["id"]}").wait(timeout=120)
print(json.dumps({{"running": running.status, "queued": queued.status,
                  "done": done.status, "unknown": unknown, "final": final.status}}))
""",
    )

    assert result["running"] in {"canceling", "canceled"}
    assert result["queued"] == "canceled"
    assert result["done"] == "succeeded"
    assert result["unknown"] == "not_found"
    assert result["final"] == "canceled"
    async with product.client() as client:
        never_ran = (await client.get(queued["urls"]["self"])).json()
    assert never_ran["started_at"] is None


async def test_unknown_and_malformed_ids_are_not_found_envelopes(
    product: Product,
) -> None:
    """C.1 20 (a job past its deadline: the test above)."""
    async with product.client() as client:
        unknown = await client.get(f"/api/v2/jobs/{uuid.uuid4()}")
        malformed = await client.get("/api/v2/jobs/abc")
        other_tenant = await _submit(client, invert_graph((3, 3, 3)))
    async with product.client(product.key_b) as other:
        hidden = await other.get(other_tenant["urls"]["self"])
    # Closed here: a client left to the garbage collector warns about its open
    # socket in whichever later test the collection happens to run.
    async with httpx.AsyncClient(base_url=product.base_url) as nobody:
        anonymous = await nobody.get("/api/v2/jobs")
        health = await nobody.get("/api/v2/health")

    for response in (unknown, malformed, hidden):
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "not_found"
        assert response.json()["error"]["message"]
    assert anonymous.status_code == 401
    assert anonymous.json()["error"]["code"] == "unauthorized"
    assert health.json() == {"status": "healthy"}


async def test_a_job_past_its_deadline_ends_for_the_sdk(product: Product) -> None:
    """C.1 20, a job that cannot be finished: the workflow service ends a job
    past its deadline as failed with `timeout` (`expired` is for a record that
    was lost, which this product never loses), so the SDK's wait ends on that
    terminal status with the error saying why."""
    async with product.client() as client:
        # A three-second deadline on a job that runs (or waits) far longer.
        accepted = await submit(client, slow_graph(30, 14), timeout_minutes=0.05)
    result = run_sdk(
        product,
        _SDK_PRELUDE
        + f"""
job = client.jobs.get("{accepted["execution_id"]}").wait(timeout=120)
print(json.dumps({{"status": job.status, "code": job.error.code}}))
""",
    )
    async with product.client() as client:
        url = f"/api/v2/jobs/{accepted['execution_id']}"
        ended = (await client.get(url)).json()

    assert result == {"status": "failed", "code": "timeout"}
    assert _aware(ended["completed_at"])
    assert ended["error"]["message"]


async def test_sdk_lists_jobs_newest_first_across_pages(product: Product) -> None:
    """C.1 24: list_jobs(limit=2) follows next_cursor to the end; limit=101 and
    a bad cursor are 400."""
    key = await _key_of_a_new_tenant(product)
    async with product.client(key) as client:
        ids = [
            (await _submit(client, invert_graph((i, i, i))))["id"] for i in (1, 2, 3)
        ]
        too_many = await client.get("/api/v2/jobs", params={"limit": "101"})
        bad_cursor = await client.get("/api/v2/jobs", params={"cursor": "nope"})
    result = run_sdk(
        product,
        _SDK_PRELUDE
        + """
print(json.dumps([job.id for job in client.list_jobs(limit=2)]))
""",
        key=key,
    )

    # Two full pages and a last one: every job once, the newest first.
    assert result == ids[::-1]
    assert too_many.status_code == 400
    assert too_many.json()["error"]["code"] == "invalid_request"
    assert bad_cursor.status_code == 400
    assert bad_cursor.json()["error"]["code"] == "invalid_cursor"


async def test_events_send_outputs_before_the_final_status_and_resume(
    product: Product,
) -> None:
    """§A.6: snapshot first, outputs before the terminal status, then close; a
    reconnect with Last-Event-ID gets no output it already had."""
    async with product.client() as client:
        job = await _submit(client, invert_graph((50, 60, 70)))
        async with client.stream("GET", job["urls"]["events"]) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            events = await _events(response)
        output_id = next(event["id"] for event in events if event["event"] == "output")
        async with client.stream(
            "GET", job["urls"]["events"], headers={"Last-Event-ID": output_id}
        ) as response:
            resumed = await _events(response)

    names = [event["event"] for event in events]
    assert names[0] == "status"
    assert names[-1] == "status"
    assert events[-1]["data"]["status"] == "succeeded"
    assert names.index("output") < len(names) - 1
    assert OUTPUT_KEYS <= events[names.index("output")]["data"].keys()
    assert [event["event"] for event in resumed] == ["status"]


async def test_events_keep_alive_and_cap_streams(product: Product) -> None:
    """§A.6: past the cap of open streams (8), 429 too_many_streams with
    Retry-After; a `: keepalive` comment within 15 s of silence."""
    async with product.client() as client:
        job = await _submit(client, slow_graph(30, 13))
        url = job["urls"]["events"]
        opened = [client.stream("GET", url) for _ in range(8)]
        streams = [await stream.__aenter__() for stream in opened]
        try:
            assert all(stream.status_code == 200 for stream in streams)
            async with client.stream("GET", url) as refused:
                await refused.aread()
            for stream in opened[1:]:
                await stream.__aexit__(None, None, None)
            # The job outlasts the wait, so the stream is still open when a
            # keep-alive is due; one that ended first has none and fails.
            seen: list[tuple[str, str]] = []
            async with asyncio.timeout(15):
                async for name, value in _frames(streams[0]):
                    seen.append((name, value))
                    if name == "comment" and value == "keepalive":
                        break
        finally:
            await opened[0].__aexit__(None, None, None)
            await client.post(job["urls"]["cancel"])

    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "too_many_streams"
    assert int(refused.headers["Retry-After"]) >= 1
    assert seen[-1:] == [("comment", "keepalive")]
