"""Helpers for driving the whole product through its public REST API."""

from __future__ import annotations

import asyncio
import io
from dataclasses import dataclass
from typing import Any

import httpx
from PIL import Image

from infra.runner import ServiceSet

FINAL = {"completed", "failed", "cancelled"}


@dataclass
class Product:
    """The running services, two tenants' bootstrap keys and the
    administrator's API key."""

    base_url: str
    key_a: str
    key_b: str
    services: ServiceSet
    stack: dict[str, str]
    admin_key: str

    def client(self, key: str | None = None) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=self.base_url,
            headers={"Authorization": f"Bearer {key or self.key_a}"},
            timeout=30,
        )


async def wait_for_status(
    client: httpx.AsyncClient,
    job_id: str,
    statuses: set[str],
    limit_s: float = 180,
) -> dict[str, Any]:
    """Poll the job until its status is one of `statuses`; fail after `limit_s`."""
    async with asyncio.timeout(limit_s):
        while True:
            response = await client.get(f"/workflows/{job_id}")
            if response.status_code == 503:  # a service is restarting: poll on
                await asyncio.sleep(0.5)
                continue
            response.raise_for_status()
            job: dict[str, Any] = response.json()
            if job["status"] in statuses:
                return job
            await asyncio.sleep(0.2)


async def wait_final(
    client: httpx.AsyncClient, job_id: str, limit_s: float = 180
) -> dict[str, Any]:
    return await wait_for_status(client, job_id, FINAL, limit_s)


async def wait_http_ok(url: str, limit_s: float = 180) -> None:
    """Wait until `url` answers 200; connection errors count as not yet."""
    async with httpx.AsyncClient(timeout=5) as probe, asyncio.timeout(limit_s):
        while True:
            try:
                if (await probe.get(url)).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.5)


async def submit(
    client: httpx.AsyncClient, workflow: dict[str, Any], **fields: Any
) -> dict[str, Any]:
    response = await client.post(
        "/workflows/execute", json={"workflow": workflow, **fields}
    )
    assert response.status_code == 202, response.text
    body: dict[str, Any] = response.json()
    return body


async def job_ids(client: httpx.AsyncClient) -> set[str]:
    """Every job id the tenant can see."""
    found: set[str] = set()
    cursor: str | None = None
    while True:
        params = {"limit": "100", **({"cursor": cursor} if cursor else {})}
        page = (await client.get("/workflows", params=params)).json()
        found |= {item["execution_id"] for item in page["items"]}
        cursor = page.get("next_cursor")
        if not cursor:
            return found


async def download_image(url: str) -> Image.Image:
    async with httpx.AsyncClient() as plain:
        response = await plain.get(url)
    response.raise_for_status()
    return Image.open(io.BytesIO(response.content)).convert("RGB")


def png(colour: tuple[int, int, int], size: tuple[int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="PNG")
    return buffer.getvalue()


def rgb(colour: tuple[int, int, int]) -> int:
    return (colour[0] << 16) | (colour[1] << 8) | colour[2]


def close_to(pixel: Any, expected: tuple[int, ...], tolerance: int = 1) -> bool:
    """ComfyUI computes in float32, so a channel may round one step either way."""
    return all(abs(a - b) <= tolerance for a, b in zip(pixel, expected, strict=True))


def invert_graph(colour: tuple[int, int, int], prefix: str = "e2e") -> dict[str, Any]:
    return {
        "1": {
            "class_type": "EmptyImage",
            "inputs": {
                "width": 32,
                "height": 16,
                "batch_size": 1,
                "color": rgb(colour),
            },
        },
        "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
        "3": {
            "class_type": "SaveImage",
            "inputs": {"images": ["2", 0], "filename_prefix": prefix},
        },
    }


def slow_graph(blurs: int, seed_colour: int) -> dict[str, Any]:
    """A model-free graph that keeps a CPU ComfyUI busy for a few seconds per blur."""
    graph: dict[str, Any] = {
        "1": {
            "class_type": "EmptyImage",
            "inputs": {
                "width": 512,
                "height": 512,
                "batch_size": 8,
                "color": seed_colour,
            },
        }
    }
    for index in range(2, blurs + 2):
        graph[str(index)] = {
            "class_type": "ImageBlur",
            "inputs": {"image": [str(index - 1), 0], "blur_radius": 31, "sigma": 10.0},
        }
    graph[str(blurs + 2)] = {
        "class_type": "SaveImage",
        "inputs": {"images": [str(blurs + 1), 0], "filename_prefix": "slow"},
    }
    return graph
