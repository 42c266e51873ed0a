"""The job path through the public REST API: submit → Kafka → ComfyUI → S3 → status."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from httpx_sse import aconnect_sse

from tests.e2e.support import (
    Product,
    close_to,
    download_image,
    invert_graph,
    job_ids,
    png,
    slow_graph,
    submit,
    wait_final,
    wait_for_status,
)

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


async def test_empty_image_inverted_and_downloadable(product: Product) -> None:
    colour = (0x20, 0x80, 0xC0)
    async with product.client() as client:
        accepted = await submit(
            client, invert_graph(colour), metadata={"case": "invert"}
        )
        assert accepted["status"] == "pending"
        job = await wait_final(client, accepted["execution_id"])

    assert job["status"] == "completed", job
    assert job["error"] is None
    assert job["metadata"] == {"case": "invert"}
    assert job["duration_seconds"] is not None
    assert job["duration_seconds"] >= 0
    [output] = job["outputs"]
    assert output["node_id"] == "3"
    assert output["content_type"] == "image/png"
    assert (output["width"], output["height"]) == (32, 16)
    picture = await download_image(output["url"])
    assert output["size"] > 0
    assert close_to(picture.getpixel((5, 5)), tuple(255 - c for c in colour))


async def test_uploaded_png_scaled_and_inverted(product: Product) -> None:
    colour = (200, 40, 90)
    async with product.client() as client:
        uploaded = await client.post(
            "/files", files={"file": ("source.png", png(colour, (8, 8)), "image/png")}
        )
        assert uploaded.status_code == 201, uploaded.text
        file_id = uploaded.json()["id"]
        metadata = (await client.get(f"/files/{file_id}")).json()
        assert (metadata["width"], metadata["height"]) == (8, 8)

        graph = {
            "10": {
                "class_type": "LoadImage",
                "inputs": {"image": {"__type": "core/ASSET", "info": {"id": file_id}}},
            },
            "11": {
                "class_type": "ImageScale",
                "inputs": {
                    "image": ["10", 0],
                    "upscale_method": "nearest-exact",
                    "width": 24,
                    "height": 12,
                    "crop": "disabled",
                },
            },
            "12": {"class_type": "ImageInvert", "inputs": {"image": ["11", 0]}},
            "13": {
                "class_type": "SaveImage",
                "inputs": {"images": ["12", 0], "filename_prefix": "scaled"},
            },
        }
        job = await wait_final(client, (await submit(client, graph))["execution_id"])

    assert job["status"] == "completed", job
    [output] = job["outputs"]
    picture = await download_image(output["url"])
    assert picture.size == (24, 12)
    expected = tuple(255 - c for c in colour)
    assert all(
        close_to(picture.getpixel((x, y)), expected)
        for x in range(24)
        for y in range(12)
    )


async def test_two_save_nodes_give_two_outputs(product: Product) -> None:
    graph = invert_graph((10, 20, 30))
    graph["4"] = {
        "class_type": "SaveImage",
        "inputs": {"images": ["1", 0], "filename_prefix": "original"},
    }
    async with product.client() as client:
        job = await wait_final(client, (await submit(client, graph))["execution_id"])
    assert job["status"] == "completed", job
    assert sorted(o["node_id"] for o in job["outputs"]) == ["3", "4"]
    pixels = {
        o["node_id"]: (await download_image(o["url"])).getpixel((0, 0))
        for o in job["outputs"]
    }
    assert close_to(pixels["4"], (10, 20, 30))
    assert close_to(pixels["3"], (245, 235, 225))


async def test_identical_prompts_both_produce_their_output(product: Product) -> None:
    # ComfyUI would answer the second from its cache, naming the first job's file.
    graph = invert_graph((90, 91, 92), prefix="same")
    async with product.client() as client:
        first = await wait_final(client, (await submit(client, graph))["execution_id"])
        second = await wait_final(client, (await submit(client, graph))["execution_id"])
    for job in (first, second):
        assert job["status"] == "completed", job
        [output] = job["outputs"]
        picture = await download_image(output["url"])
        assert close_to(picture.getpixel((0, 0)), (165, 164, 163))
    assert first["outputs"][0]["file_id"] != second["outputs"][0]["file_id"]


async def test_events_stream_outputs_before_final_status(product: Product) -> None:
    async with product.client() as client:
        accepted = await submit(client, invert_graph((1, 2, 3)))
        events: list[tuple[str, dict[str, Any]]] = []
        async with (
            asyncio.timeout(180),
            aconnect_sse(
                client, "GET", f"/workflows/{accepted['execution_id']}/events"
            ) as source,
        ):
            async for event in source.aiter_sse():
                events.append((event.event, json.loads(event.data)))
    names = [name for name, _ in events]
    assert names[0] == "status"
    assert names[-1] == "status"
    assert events[-1][1]["status"] == "completed"
    assert "output" in names
    assert max(i for i, n in enumerate(names) if n == "output") < len(names) - 1


def unknown_node(graph: dict[str, Any]) -> dict[str, Any]:
    graph["2"]["class_type"] = "NoSuchNode"
    return graph


def wrong_type(graph: dict[str, Any]) -> dict[str, Any]:
    graph["1"]["inputs"]["width"] = "wide"
    return graph


def cycle(graph: dict[str, Any]) -> dict[str, Any]:
    graph["2"]["inputs"]["image"] = ["4", 0]
    graph["4"] = {"class_type": "ImageInvert", "inputs": {"image": ["2", 0]}}
    return graph


def missing_link(graph: dict[str, Any]) -> dict[str, Any]:
    graph["2"]["inputs"]["image"] = ["99", 0]
    return graph


@pytest.mark.parametrize(
    ("breaks", "node", "kind"),
    [
        (unknown_node, "2", "missing_node_type"),
        (wrong_type, "1", "invalid_input_type"),
        (cycle, "2", "dependency_cycle"),
        (missing_link, "2", "exception_during_validation"),
    ],
)
async def test_invalid_workflow_rejected_naming_the_node(
    product: Product, breaks: Any, node: str, kind: str
) -> None:
    async with product.client() as client:
        before = await job_ids(client)
        response = await client.post(
            "/workflows/execute", json={"workflow": breaks(invert_graph((0, 0, 0)))}
        )
        assert response.status_code == 422, response.text
        body = response.json()
        assert body["error"] == "invalid_workflow"
        assert kind in {e["type"] for e in body["node_errors"][node]["errors"]}
        assert await job_ids(client) == before


async def test_ui_export_rejected(product: Product) -> None:
    async with product.client() as client:
        response = await client.post(
            "/workflows/execute",
            json={"workflow": {"last_node_id": 3, "nodes": [{"id": 1}], "links": []}},
        )
    assert response.status_code == 422
    assert response.json()["error"] == "workflow_format_ui"


async def test_oversized_body_rejected(product: Product) -> None:
    graph = invert_graph((0, 0, 0))
    graph["3"]["_meta"] = {"title": "x" * (11 * 1024 * 1024)}
    async with product.client() as client:
        before = await job_ids(client)
        response = await client.post("/workflows/execute", json={"workflow": graph})
        assert response.status_code == 413
        assert response.json()["error"] == "payload_too_large"
        assert response.json()["limit_bytes"] > 0
        assert await job_ids(client) == before


async def test_a_request_that_once_blocked_every_queue_is_refused(
    product: Product,
) -> None:
    # A SaveImage with 80 undeclared inputs of 20,000 characters (1.6 MB): it
    # was accepted, could not be relayed, and stopped every tenant's jobs.
    graph = invert_graph((0, 0, 0))
    graph["3"]["inputs"].update({f"pad{i}": "x" * 20_000 for i in range(80)})
    async with product.client(product.key_b) as attacker:
        response = await attacker.post("/workflows/execute", json={"workflow": graph})
    assert response.status_code == 422, response.text
    assert "3" in response.json()["node_errors"]
    async with product.client() as client:
        job = await wait_final(
            client, (await submit(client, invert_graph((3, 3, 3))))["execution_id"]
        )
    assert job["status"] == "completed"


@pytest.mark.parametrize(
    "name", ["ComfyUI_00001_.png [output]", "other-job/secret.png", "../x.png"]
)
async def test_file_inputs_cannot_reach_comfyuis_shared_folders(
    product: Product, name: str
) -> None:
    graph = {
        "1": {"class_type": "LoadImage", "inputs": {"image": name}},
        "2": {
            "class_type": "SaveImage",
            "inputs": {"images": ["1", 0], "filename_prefix": "x"},
        },
    }
    async with product.client() as client:
        response = await client.post("/workflows/execute", json={"workflow": graph})
    assert response.status_code == 422, response.text
    [item] = response.json()["node_errors"]["1"]["errors"]
    assert item["extra_info"]["input_name"] == "image"


async def test_a_plain_file_name_finds_only_the_tenants_own_files(
    product: Product,
) -> None:
    # Another job's input, left in ComfyUI's shared input folder: a plain name
    # resolves among the tenant's uploads only, so it is not in the list.
    scratch = Path(product.services["executor"].env["EXECUTOR_SCRATCH_DIR"])
    shared = scratch / "comfyui" / "input" / "left-behind.png"
    shared.write_bytes(png((9, 9, 9), (4, 4)))
    graph = {
        "1": {"class_type": "LoadImage", "inputs": {"image": "left-behind.png"}},
        "2": {
            "class_type": "SaveImage",
            "inputs": {"images": ["1", 0], "filename_prefix": "x"},
        },
    }
    async with product.client() as client:
        response = await client.post("/workflows/execute", json={"workflow": graph})
    assert response.status_code == 422, response.text
    [item] = response.json()["node_errors"]["1"]["errors"]
    assert item["type"] == "value_not_in_list"
    assert item["extra_info"]["received_value"] == "left-behind.png"
    assert str(scratch) not in response.text


async def test_other_tenants_file_is_not_usable(product: Product) -> None:
    async with product.client(product.key_b) as other:
        uploaded = await other.post(
            "/files",
            files={"file": ("theirs.png", png((1, 1, 1), (4, 4)), "image/png")},
        )
        assert uploaded.status_code == 201
        theirs = uploaded.json()["id"]
    graph = {
        "1": {
            "class_type": "LoadImage",
            "inputs": {"image": {"__type": "core/ASSET", "info": {"id": theirs}}},
        },
        "2": {
            "class_type": "SaveImage",
            "inputs": {"images": ["1", 0], "filename_prefix": "x"},
        },
    }
    async with product.client() as client:
        assert (await client.get(f"/files/{theirs}")).status_code == 404
        before = await job_ids(client)
        response = await client.post("/workflows/execute", json={"workflow": graph})
        assert response.status_code == 422, response.text
        errors = response.json()["node_errors"]["1"]["errors"]
        assert errors[0]["type"] == "missing_asset"
        assert await job_ids(client) == before


async def test_other_tenant_cannot_see_a_job(product: Product) -> None:
    async with product.client() as client:
        job_id = (await submit(client, invert_graph((5, 5, 5))))["execution_id"]
    async with product.client(product.key_b) as other:
        assert (await other.get(f"/workflows/{job_id}")).status_code == 404
        assert (await other.post(f"/workflows/{job_id}/cancel")).status_code == 404
        assert job_id not in await job_ids(other)


async def test_runtime_error_names_the_node(product: Product) -> None:
    # Valid to every check, but scaled down to nothing: ComfyUI raises at runtime.
    graph = invert_graph((0, 0, 0))
    graph["2"] = {
        "class_type": "ImageScaleBy",
        "inputs": {
            "image": ["1", 0],
            "upscale_method": "nearest-exact",
            "scale_by": 0.01,
        },
    }
    async with product.client() as client:
        job = await wait_final(client, (await submit(client, graph))["execution_id"])
    assert job["status"] == "failed"
    assert job["error"]["code"] == "node_execution_error"
    assert job["error"]["node_id"] == "2"
    assert job["error"]["class_type"] == "ImageScaleBy"
    assert "sizes should be greater than 0" in job["error"]["message"]


async def test_cancel_while_running_then_while_queued(product: Product) -> None:
    async with product.client() as client:
        running = await submit(client, slow_graph(30, 11))
        queued = await submit(client, slow_graph(30, 12))
        await wait_for_status(client, running["execution_id"], {"running"})

        cancelled_queued = await client.post(
            f"/workflows/{queued['execution_id']}/cancel"
        )
        assert cancelled_queued.status_code == 200
        assert cancelled_queued.json()["status"] == "cancelled"

        response = await client.post(f"/workflows/{running['execution_id']}/cancel")
        assert response.status_code == 200
        job = await wait_final(client, running["execution_id"], limit_s=120)
        assert job["status"] == "cancelled"
        assert (await wait_final(client, queued["execution_id"]))[
            "status"
        ] == "cancelled"

        # The worker is free again: a new job runs to the end.
        after = await submit(client, invert_graph((9, 9, 9)))
        assert (await wait_final(client, after["execution_id"]))[
            "status"
        ] == "completed"


async def test_timeout_fails_the_job(product: Product) -> None:
    async with product.client() as client:
        accepted = await submit(client, slow_graph(30, 13), timeout_minutes=0.1)
        job = await wait_final(client, accepted["execution_id"], limit_s=180)
        assert job["status"] == "failed"
        assert job["error"]["code"] == "timeout"
        after = await submit(client, invert_graph((8, 8, 8)))
        assert (await wait_final(client, after["execution_id"]))[
            "status"
        ] == "completed"


async def test_duplicate_idempotency_key(product: Product) -> None:
    key = str(uuid.uuid4())
    body = {"workflow": invert_graph((7, 7, 7))}
    async with product.client() as client:
        first = await client.post(
            "/workflows/execute", json=body, headers={"Idempotency-Key": key}
        )
        again = await client.post(
            "/workflows/execute", json=body, headers={"Idempotency-Key": key}
        )
        other = await client.post(
            "/workflows/execute",
            json={"workflow": invert_graph((6, 6, 6))},
            headers={"Idempotency-Key": key},
        )
        assert first.status_code == 202
        assert again.status_code == 202
        assert again.json()["execution_id"] == first.json()["execution_id"]
        assert again.headers.get("Idempotent-Replayed") == "true"
        assert other.status_code == 422
        assert other.json()["error"] == "idempotency_key_reuse"
        await wait_final(client, first.json()["execution_id"])


async def test_unauthenticated_requests_refused(product: Product) -> None:
    async with httpx.AsyncClient(base_url=product.base_url) as anonymous:
        assert (await anonymous.get("/workflows")).status_code == 401
        bad = await anonymous.get(
            "/workflows", headers={"Authorization": "Bearer nope"}
        )
        assert bad.status_code == 401
        assert (await anonymous.get("/health/live")).status_code == 200
