"""What our job path adds to a model-free prompt, against raw ComfyUI in the same run.

Each round sends one prompt through the REST API (followed over SSE until its final
status) and one straight to the same ComfyUI (followed over its websocket until the
prompt finishes), alternating so drift hits both alike. Every prompt differs in its
colour, so ComfyUI's cache never answers for either path.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import sys
import time
import uuid
from dataclasses import dataclass
from typing import Any

import aiohttp
import httpx
from httpx_sse import aconnect_sse

from bench.product import UNLIMITED, percentile, running_product
from tests.e2e.support import invert_graph

FINAL = {"completed", "failed", "cancelled"}


@dataclass
class Sample:
    ours_s: float
    raw_s: float


async def through_api(client: httpx.AsyncClient, graph: dict[str, Any]) -> float:
    start = time.perf_counter()
    accepted = await client.post("/workflows/execute", json={"workflow": graph})
    accepted.raise_for_status()
    job_id = accepted.json()["execution_id"]
    async with aconnect_sse(client, "GET", f"/workflows/{job_id}/events") as source:
        async for event in source.aiter_sse():
            if event.event == "status" and json.loads(event.data)["status"] in FINAL:
                status = json.loads(event.data)["status"]
                if status != "completed":
                    raise RuntimeError(f"job {job_id} ended {status}")
                return time.perf_counter() - start
    raise RuntimeError(f"the event stream of job {job_id} ended early")


async def straight_to_comfyui(
    session: aiohttp.ClientSession, base_url: str, graph: dict[str, Any]
) -> float:
    client_id = uuid.uuid4().hex
    async with session.ws_connect(f"{base_url}/ws?clientId={client_id}") as socket:
        start = time.perf_counter()
        async with session.post(
            f"{base_url}/prompt", json={"prompt": graph, "client_id": client_id}
        ) as response:
            response.raise_for_status()
            prompt_id = (await response.json())["prompt_id"]
        async for message in socket:
            if message.type != aiohttp.WSMsgType.TEXT:
                continue
            body = json.loads(message.data)
            data = body.get("data", {})
            if (
                body.get("type") == "executing"
                and data.get("node") is None
                and data.get("prompt_id") == prompt_id
            ):
                return time.perf_counter() - start
    raise RuntimeError("ComfyUI closed its websocket before the prompt finished")


async def measure(base_url: str, key: str, comfy_url: str, jobs: int) -> list[Sample]:
    samples: list[Sample] = []
    headers = {"Authorization": f"Bearer {key}"}
    async with (
        httpx.AsyncClient(base_url=base_url, headers=headers, timeout=60) as client,
        aiohttp.ClientSession() as session,
    ):
        for warmup in range(5):
            await through_api(client, invert_graph((warmup, 1, 250)))
            await straight_to_comfyui(
                session, comfy_url, invert_graph((warmup, 2, 250))
            )
        for index in range(jobs):
            colour = (index % 256, (index // 256) % 256, 77)
            ours = await through_api(client, invert_graph(colour, prefix="bench"))
            raw = await straight_to_comfyui(
                session, comfy_url, invert_graph((colour[0], colour[1], 78), "bench")
            )
            samples.append(Sample(ours, raw))
    return samples


def report(samples: list[Sample], out: Any) -> None:
    ours = [s.ours_s * 1000 for s in samples]
    raw = [s.raw_s * 1000 for s in samples]
    rows = {"raw ComfyUI": raw, "through API": ours}
    out.write(f"jobs per path: {len(samples)}, sequential, model-free prompt\n")
    for name, values in rows.items():
        out.write(
            f"{name:12}  p50 {statistics.median(values):8.1f} ms"
            f"  p99 {percentile(values, 0.99):8.1f} ms"
            f"  {1000 / statistics.mean(values):6.1f} jobs/s\n"
        )
    ratio = statistics.median(ours) / statistics.median(raw)
    added_p50 = statistics.median(ours) - statistics.median(raw)
    added_p99 = percentile(ours, 0.99) - percentile(raw, 0.99)
    out.write(f"ratio through API / raw at p50: {ratio:.2f}\n")
    out.write(f"overhead p50_ms={added_p50:.1f} p99_ms={added_p99:.1f}\n")


def main() -> int:
    jobs = int(os.environ.get("BENCH_JOBS", "200"))
    with running_product(UNLIMITED) as product:
        samples = asyncio.run(
            measure(product.base_url, product.key, product.stack["COMFYUI_URL"], jobs)
        )
    report(samples, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
