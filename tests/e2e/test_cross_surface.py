"""One job, every surface: a job submitted over REST is a native prompt and a
v2 job, a native prompt is a REST execution and a v2 job, and another tenant
sees it nowhere."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from tests.e2e.support import Product, invert_graph, submit, wait_final

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


async def native_history(client: httpx.AsyncClient, job_id: str) -> dict[str, Any]:
    """The job's `/history` entry, once it has one (within three minutes)."""
    async with asyncio.timeout(180):
        while True:
            found = (await client.get(f"/history/{job_id}")).json()
            if found:
                entry: dict[str, Any] = found[job_id]
                return entry
            await asyncio.sleep(0.3)


async def test_a_rest_job_is_a_native_prompt(product: Product) -> None:
    async with product.client() as client:
        accepted = await submit(client, invert_graph((10, 20, 30), "cross"))
        job_id = accepted["execution_id"]
        job = await wait_final(client, job_id)
        entry = await native_history(client, job_id)
        listed = (await client.get("/api/jobs", params={"limit": "100"})).json()
        detail = (await client.get(f"/api/jobs/{job_id}")).json()
        v2 = (await client.get(f"/api/v2/jobs/{job_id}")).json()

    assert job["status"] == "completed"
    assert (v2["id"], v2["status"]) == (job_id, "succeeded")
    [image] = entry["outputs"]["3"]["images"]
    assert image["subfolder"] == job_id
    assert entry["status"]["status_str"] == "success"
    assert job_id in {item["id"] for item in listed["jobs"]}
    assert (detail["status"], detail["outputs"]) == ("completed", entry["outputs"])


async def test_a_native_prompt_is_a_rest_execution(product: Product) -> None:
    async with product.client() as client:
        answer = await client.post(
            "/prompt",
            json={"prompt": invert_graph((40, 50, 60)), "client_id": "cross-c"},
        )
        prompt_id = answer.json()["prompt_id"]
        job = await wait_final(client, prompt_id)
        listed = (await client.get("/workflows", params={"limit": "100"})).json()
        v2 = (await client.get(f"/api/v2/jobs/{prompt_id}")).json()

    assert job["execution_id"] == prompt_id
    assert (v2["id"], v2["status"]) == (prompt_id, "succeeded")
    assert [output["node_id"] for output in v2["outputs"]] == ["3"]
    assert job["status"] == "completed"
    assert [output["node_id"] for output in job["outputs"]] == ["3"]
    assert prompt_id in {item["execution_id"] for item in listed["items"]}


async def test_another_tenant_sees_the_prompt_nowhere(product: Product) -> None:
    async with product.client() as owner:
        answer = await owner.post(
            "/api/prompt",
            json={"prompt": invert_graph((70, 80, 90)), "client_id": "mine"},
        )
        prompt_id = answer.json()["prompt_id"]
        await wait_final(owner, prompt_id)
        await native_history(owner, prompt_id)

    async with product.client(product.key_b) as other:
        history = (await other.get(f"/history/{prompt_id}")).json()
        all_history = (await other.get("/history")).json()
        queue = (await other.get("/queue")).text
        jobs = (await other.get("/api/jobs")).json()
        job = await other.get(f"/api/jobs/{prompt_id}")
        cancel = (await other.post(f"/api/jobs/{prompt_id}/cancel")).json()
        rest = await other.get(f"/workflows/{prompt_id}")
        v2 = await other.get(f"/api/v2/jobs/{prompt_id}")
        v2_listed = (await other.get("/api/v2/jobs", params={"limit": "100"})).json()
        taken = await other.post(
            "/prompt",
            json={"prompt": invert_graph((1, 1, 1)), "prompt_id": prompt_id},
        )

    assert history == {}
    assert prompt_id not in all_history
    assert prompt_id not in queue
    assert prompt_id not in {item["id"] for item in jobs["jobs"]}
    assert (job.status_code, job.json()) == (404, {"error": "Job not found"})
    assert cancel == {"cancelled": False}
    assert rest.status_code == 404
    assert (v2.status_code, v2.json()["error"]["code"]) == (404, "not_found")
    assert prompt_id not in {job["id"] for job in v2_listed["jobs"]}
    # The id is taken, and that is all the answer says.
    assert (taken.status_code, taken.json()) == (
        409,
        {"error": "prompt_id already exists"},
    )
