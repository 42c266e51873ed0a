"""Every service's log after jobs on each surface (REST with an API key, the
native API with a partner key, v2 with a user's JWT and an uploaded asset),
and a presigned download: no key, token, signature or prompt text in any line,
and the job's lines name it, its tenant and its trace."""

from __future__ import annotations

import asyncio
import json
import random
import re
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from tests.e2e.support import Product, download_image, invert_graph, png, wait_final

pytestmark = [pytest.mark.e2e]

PASSWORD = "correct horse battery staple"
# Secrets in any form, whoever minted them: a signature, a JWT or an API key
# that the redaction did not mask.
UNMASKED = (
    re.compile(r"(?i)X-Amz-Signature(=|%3D)(?!\*\*\*)"),
    re.compile(r"\beyJ[A-Za-z0-9_-]+\.eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]{8,}"),
    re.compile(r"\bcsk_(?!\*\*\*)[A-Za-z0-9_-]+"),
)


def colour() -> tuple[int, int, int]:
    """A colour of its own, so ComfyUI runs the graph rather than its cache."""
    return (random.randrange(256), random.randrange(256), random.randrange(256))


def titled(graph: dict[str, Any], title: str) -> dict[str, Any]:
    """`graph` with a node title only a logged workflow could show."""
    graph["2"]["_meta"] = {"title": title}
    return graph


async def sign_up(product: Product) -> dict[str, Any]:
    email = f"hygiene-{uuid.uuid4().hex[:10]}@example.com"
    async with httpx.AsyncClient(base_url=product.base_url, timeout=30) as anonymous:
        registered = await anonymous.post(
            "/auth/register", json={"email": email, "password": PASSWORD}
        )
        assert registered.status_code == 201, registered.text
        tokens = await anonymous.post(
            "/auth/token", data={"username": email, "password": PASSWORD}
        )
        assert tokens.status_code == 200, tokens.text
    body: dict[str, Any] = tokens.json()
    return body


async def run_rest(product: Product, prompt: str) -> tuple[dict[str, Any], str]:
    """A REST job with the bootstrap API key; its output's presigned URL."""
    async with product.client() as client:
        accepted = await client.post(
            "/workflows/execute",
            json={"workflow": titled(invert_graph(colour(), "hygiene"), prompt)},
        )
        assert accepted.status_code == 202, accepted.text
        job = await wait_final(client, accepted.json()["execution_id"])
    assert job["status"] == "completed", job
    url: str = job["outputs"][0]["url"]
    await download_image(url)
    return job, url


async def run_native(product: Product, prompt: str, partner_key: str) -> None:
    async with product.client() as client:
        queued = await client.post(
            "/prompt",
            json={
                "prompt": titled(invert_graph(colour(), "native"), prompt),
                "extra_data": {"api_key_comfy_org": partner_key},
            },
        )
        assert queued.status_code == 200, queued.text
        prompt_id = queued.json()["prompt_id"]
        async with asyncio.timeout(180):
            while True:
                if (await client.get(f"/history/{prompt_id}")).json():
                    return
                await asyncio.sleep(0.3)


async def run_v2(product: Product, prompt: str, access_token: str) -> None:
    """A user's v2 job on an uploaded asset, and its output's bytes."""
    async with product.client(access_token) as client:
        uploaded = await client.post(
            "/api/v2/assets",
            data={"content_type": "image/png", "file_path": "hygiene.png"},
            files={"file": ("hygiene.png", png(colour(), (8, 8)), "image/png")},
        )
        assert uploaded.status_code == 201, uploaded.text
        graph = {
            "1": {"class_type": "LoadImage", "inputs": {"image": "hygiene.png"}},
            "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
            "3": {
                "class_type": "SaveImage",
                "inputs": {"images": ["2", 0], "filename_prefix": "v2hygiene"},
            },
        }
        response = await client.post(
            "/api/v2/jobs", json={"workflow": titled(graph, prompt)}
        )
        assert response.status_code == 201, response.text
        job = response.json()
        async with asyncio.timeout(180):
            while job["status"] not in {"succeeded", "failed", "canceled", "expired"}:
                await asyncio.sleep(0.2)
                job = (await client.get(job["urls"]["self"])).json()
        assert job["status"] == "succeeded", job
        content = await client.get(f"/api/v2/assets/{job['outputs'][0]['id']}/content")
        assert content.status_code == 200


def service_logs(product: Product) -> dict[str, list[str]]:
    log_dir = product.services["gateway"].log_dir
    return {
        path.stem: path.read_text(errors="replace").splitlines()
        for path in sorted(Path(log_dir).glob("*.log"))
    }


async def test_no_secret_url_or_workflow_in_any_service_log(product: Product) -> None:
    prompt = f"a lighthouse in violet fog, {uuid.uuid4().hex}"
    partner_key = f"partner-{uuid.uuid4().hex}"
    tokens = await sign_up(product)

    job, url = await run_rest(product, prompt)
    await run_native(product, prompt, partner_key)
    await run_v2(product, prompt, tokens["access_token"])
    # The services flush their lines as they write them; give the last a moment.
    await asyncio.sleep(2)

    [signature] = parse_qs(urlsplit(url).query)["X-Amz-Signature"]
    secrets = {
        "API key A": product.key_a,
        "API key B": product.key_b,
        "administrator key": product.admin_key,
        "access token": tokens["access_token"],
        "refresh token": tokens["refresh_token"],
        "partner key": partner_key,
        "presigned signature": signature,
        "prompt text": prompt,
    }
    logs = service_logs(product)
    assert {"gateway", "workflow", "executor", "storage", "auth"} <= logs.keys()
    leaks = [
        f"{service}: {what}"
        for service, lines in logs.items()
        for line in lines
        for what, secret in secrets.items()
        if secret in line
    ]
    unmasked = [
        f"{service}: {line[:200]}"
        for service, lines in logs.items()
        for line in lines
        if any(pattern.search(line) for pattern in UNMASKED)
    ]
    assert leaks == []
    assert unmasked == []

    # The REST job's own lines, in the services that handled it, name it, its
    # tenant and the trace they were written in.
    job_id = job["execution_id"]
    for service in ("workflow", "executor"):
        records = [
            json.loads(line)
            for line in logs[service]
            if line.startswith("{") and job_id in line
        ]
        named = [r for r in records if r.get("job_id") == job_id]
        assert named, f"{service} wrote no line naming the job"
        assert any(r.get("tenant_id") and r.get("trace_id") for r in named), (
            service,
            named[:3],
        )
