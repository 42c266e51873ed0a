"""ComfyUI's native HTTP API through the whole product (API.md Part C.2 31, 33,
38, and /interrupt, /history, /api/jobs): real executors and ComfyUI behind
the gateway, plain HTTP in front of it."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import httpx
import pytest

from tests.e2e.support import (
    Product,
    invert_graph,
    slow_graph,
    wait_final,
    wait_for_status,
)

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

PARTNER_KEY = f"partner-key-{uuid.uuid4().hex}"


async def queue_prompt(
    client: httpx.AsyncClient, prompt: dict[str, Any], **fields: Any
) -> str:
    response = await client.post("/prompt", json={"prompt": prompt, **fields})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["node_errors"] == {}
    assert isinstance(body["number"], int)
    prompt_id: str = body["prompt_id"]
    return prompt_id


async def wait_history(
    client: httpx.AsyncClient, prompt_id: str, limit_s: float = 180
) -> dict[str, Any]:
    """Poll `/history/{id}` until the prompt has an entry; fail after `limit_s`."""
    async with asyncio.timeout(limit_s):
        while True:
            found = (await client.get(f"/api/history/{prompt_id}")).json()
            if found:
                entry: dict[str, Any] = found[prompt_id]
                return entry
            await asyncio.sleep(0.3)


async def test_a_prompt_runs_and_its_history_lists_its_image(product: Product) -> None:
    prompt_id = str(uuid.uuid4())
    async with product.client() as client:
        assert (await client.get(f"/history/{prompt_id}")).json() == {}
        queued = await queue_prompt(
            client, invert_graph((1, 2, 3), "native"), prompt_id=prompt_id
        )
        entry = await wait_history(client, prompt_id)
        job = (await client.get(f"/api/jobs/{prompt_id}")).json()
        [image] = entry["outputs"]["3"]["images"]
        # The item names the file `/view` serves.
        viewed = await client.get("/view", params=image)

    assert queued == prompt_id
    assert viewed.status_code == 200
    assert viewed.content.startswith(b"\x89PNG")
    assert image["subfolder"] == prompt_id
    assert image["type"] == "output"
    assert image["filename"].startswith("native")
    assert image["filename"].endswith(".png")
    status = entry["status"]
    assert (status["status_str"], status["completed"]) == ("success", True)
    assert [kind for kind, _ in status["messages"]][-1] == "execution_success"
    assert entry["prompt"][1] == prompt_id
    assert entry["prompt"][4] == ["3"]
    assert (job["status"], job["outputs_count"]) == ("completed", 1)
    assert job["outputs"] == entry["outputs"]


async def test_a_runtime_error_is_an_error_entry(product: Product) -> None:
    # Valid to every check, but scaled down to nothing: ComfyUI raises at runtime.
    graph = invert_graph((4, 5, 6))
    graph["2"] = {
        "class_type": "ImageScaleBy",
        "inputs": {
            "image": ["1", 0],
            "upscale_method": "nearest-exact",
            "scale_by": 0.01,
        },
    }
    async with product.client() as client:
        prompt_id = await queue_prompt(client, graph)
        entry = await wait_history(client, prompt_id)
        listed = (await client.get("/api/jobs", params={"status": "failed"})).json()

    status = entry["status"]
    assert (status["status_str"], status["completed"]) == ("error", False)
    kind, data = status["messages"][-1]
    assert kind == "execution_error"
    assert (data["node_id"], data["node_type"]) == ("2", "ImageScaleBy")
    assert isinstance(data["traceback"], list)
    assert data["exception_message"]
    assert entry["outputs"] == {}
    assert prompt_id in {job["id"] for job in listed["jobs"]}


async def test_queue_delete_and_targeted_interrupt(product: Product) -> None:
    """C.2 38 then 31: one prompt runs, one waits; the waiting one is deleted
    and never runs, the running one is interrupted by its id."""
    async with product.client() as client:
        running = await queue_prompt(client, slow_graph(30, 21), client_id="c-run")
        waiting = await queue_prompt(
            client,
            slow_graph(30, 22),
            client_id="c-wait",
            extra_data={"api_key_comfy_org": PARTNER_KEY},
        )
        await wait_for_status(client, running, {"running"})

        queue = await client.get("/queue")
        remaining = (await client.get("/api/prompt")).json()
        assert PARTNER_KEY not in queue.text
        queue_body = queue.json()
        [run_item] = queue_body["queue_running"]
        [wait_item] = queue_body["queue_pending"]
        assert [len(run_item), len(wait_item)] == [5, 5]
        assert (run_item[1], wait_item[1]) == (running, waiting)
        assert run_item[0] < wait_item[0]
        assert wait_item[3]["client_id"] == "c-wait"
        assert wait_item[2]["1"]["class_type"] == "EmptyImage"
        assert remaining == {"exec_info": {"queue_remaining": 2}}

        deleted = await client.post("/queue", json={"delete": [waiting]})
        assert (deleted.status_code, deleted.content) == (200, b"")
        # A prompt that is not running is not interrupted.
        await client.post("/interrupt", json={"prompt_id": waiting})
        assert (await client.get(f"/workflows/{running}")).json()["status"] == (
            "running"
        )

        stopped = await client.post("/interrupt", json={"prompt_id": running})
        assert (stopped.status_code, stopped.content) == (200, b"")
        entry = await wait_history(client, running)
        never_ran = await wait_final(client, waiting)
        assert (await client.get(f"/history/{waiting}")).json() == {}

    assert entry["status"]["messages"][-1][0] == "execution_interrupted"
    assert entry["status"]["status_str"] == "error"
    assert never_ran["status"] == "cancelled"
    assert never_ran["started_at"] is None


async def test_interrupt_without_a_prompt_id_stops_the_callers_prompt(
    product: Product,
) -> None:
    async with product.client() as client:
        prompt_id = await queue_prompt(client, slow_graph(30, 23))
        await wait_for_status(client, prompt_id, {"running"})
        async with product.client(product.key_b) as other:
            # Another tenant's interrupt reaches nothing of this tenant.
            await other.post("/interrupt")
        assert (await client.get(f"/workflows/{prompt_id}")).json()["status"] == (
            "running"
        )
        await client.post("/api/interrupt")
        job = await wait_final(client, prompt_id)
        summary = (await client.get(f"/api/jobs/{prompt_id}")).json()

    assert job["status"] == "cancelled"
    assert summary["status"] == "cancelled"


async def test_the_g3_jobs_cancel_a_queued_prompt(product: Product) -> None:
    async with product.client() as client:
        running = await queue_prompt(client, slow_graph(30, 24))
        waiting = await queue_prompt(client, invert_graph((7, 7, 7)))
        cancelled = await client.post(f"/api/jobs/{waiting}/cancel")
        again = await client.post(f"/api/jobs/{waiting}/cancel")
        many = await client.post("/api/jobs/cancel", json={"job_ids": [running]})
        await wait_final(client, running)
        pending = (await client.get("/api/jobs", params={"status": "pending"})).json()

    assert cancelled.json() == {"cancelled": True}
    assert again.json() == {"cancelled": False}
    assert many.json() == {"cancelled": True}
    assert waiting not in {job["id"] for job in pending["jobs"]}


def _node_errors(body: dict[str, Any], node_id: str) -> list[dict[str, Any]]:
    errors: list[dict[str, Any]] = body["node_errors"][node_id]["errors"]
    return errors


async def test_validation_failures_have_comfyuis_shapes(product: Product) -> None:
    """C.2 33."""
    base = invert_graph((0, 0, 0))
    too_small = json.loads(json.dumps(base))
    too_small["1"]["inputs"]["width"] = -5
    missing_input = json.loads(json.dumps(base))
    del missing_input["1"]["inputs"]["height"]
    dangling = json.loads(json.dumps(base))
    dangling["2"]["inputs"]["image"] = ["99", 0]
    no_output = {"1": base["1"], "2": base["2"]}
    unknown = {**base, "4": {"class_type": "NoSuchNode", "inputs": {}}}

    async with product.client() as client:
        answers = {
            name: await client.post("/prompt", json={"prompt": graph})
            for name, graph in {
                "too_small": too_small,
                "missing_input": missing_input,
                "dangling": dangling,
                "no_output": no_output,
                "unknown": unknown,
            }.items()
        }
        no_prompt = await client.post("/api/prompt", json={"client_id": "x"})

    assert {name: r.status_code for name, r in answers.items()} == dict.fromkeys(
        answers, 400
    )
    small = answers["too_small"].json()
    assert small["error"]["type"] == "prompt_outputs_failed_validation"
    assert set(small["error"]) == {"type", "message", "details", "extra_info"}
    [error] = _node_errors(small, "1")
    assert error["type"] == "value_smaller_than_min"
    assert error["details"] == "width"
    assert error["extra_info"]["input_name"] == "width"
    assert error["extra_info"]["received_value"] == -5
    assert error["extra_info"]["input_config"][0] == "INT"
    assert small["node_errors"]["1"]["dependent_outputs"] == ["3"]
    assert small["node_errors"]["1"]["class_type"] == "EmptyImage"
    missing = _node_errors(answers["missing_input"].json(), "1")
    assert [e["type"] for e in missing] == ["required_input_missing"]
    assert missing[0]["extra_info"]["input_name"] == "height"
    dangling_errors = _node_errors(answers["dangling"].json(), "2")
    assert dangling_errors[0]["type"] == "exception_during_validation"
    assert answers["no_output"].json()["error"]["type"] == "prompt_no_outputs"
    assert answers["no_output"].json()["node_errors"] == {}
    assert answers["unknown"].json()["error"]["type"] == "missing_node_type"
    assert answers["unknown"].json()["node_errors"] == {}
    assert no_prompt.status_code == 400
    assert no_prompt.json()["error"]["type"] == "no_prompt"
    assert no_prompt.json()["node_errors"] == {}


async def test_object_info_is_the_fleets_catalog(product: Product) -> None:
    async with product.client() as client:
        whole = (await client.get("/object_info")).json()
        one = (await client.get("/api/object_info/EmptyImage")).json()
        unknown = await client.get("/object_info/NoSuchNode")

    assert {"EmptyImage", "ImageInvert", "SaveImage"} <= whole.keys()
    assert one == {"EmptyImage": whole["EmptyImage"]}
    assert one["EmptyImage"]["input"]["required"]["width"][0] == "INT"
    assert (unknown.status_code, unknown.json()) == (200, {})
