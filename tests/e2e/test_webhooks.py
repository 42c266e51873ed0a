"""Signed webhooks end to end: a real job, the notifier, and receivers on this
machine that verify every request with the independent `standardwebhooks`
package (`tools/webhook_receiver.py`)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from standardwebhooks.webhooks import Webhook

from tests.e2e.support import Product, invert_graph, submit, wait_final
from tools.webhook_receiver import Received, Receiver, serving

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

PASSWORD = "a long webhook passphrase"


@pytest.fixture
async def owner(product: Product) -> AsyncIterator[httpx.AsyncClient]:
    """The owner of a tenant of its own, so no other test's jobs reach its
    endpoints; its token holds every scope but admin."""
    email = f"hooks-{uuid.uuid4().hex[:10]}@example.com"
    async with httpx.AsyncClient(base_url=product.base_url, timeout=30) as anonymous:
        registered = await anonymous.post(
            "/auth/register", json={"email": email, "password": PASSWORD}
        )
        assert registered.status_code == 201, registered.text
        signed_in = await anonymous.post(
            "/auth/token", data={"username": email, "password": PASSWORD}
        )
        assert signed_in.status_code == 200, signed_in.text
    token = signed_in.json()["access_token"]
    async with product.client(token) as client:
        yield client


async def received(
    receiver: Receiver, count: int, limit_s: float = 60
) -> list[Received]:
    """What `receiver` verified, once it is `count` deliveries; a deadline,
    never a fixed wait. The receiver serves in a thread of its own."""
    async with asyncio.timeout(limit_s):
        while True:
            if len(receiver.received) >= count:
                return list(receiver.received)
            await asyncio.sleep(0.2)


_FRESH = {"url", "url_expires_at"}


def without_urls(body: dict[str, Any]) -> dict[str, Any]:
    """The body but its outputs' presigned URLs, which each attempt makes
    afresh (the job is read when it is sent)."""
    data = dict(body["data"])
    data["outputs"] = [
        {k: v for k, v in output.items() if k not in _FRESH}
        for output in data["outputs"]
    ]
    return {**body, "data": data}


def ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json()


async def test_a_job_is_delivered_signed_to_its_url_and_to_an_endpoint(
    owner: httpx.AsyncClient,
) -> None:
    tenant_secret = (ok(await owner.get("/webhooks/secret")))["secret"]
    to_job = Receiver([tenant_secret])
    # Verified by the endpoint's own secret (index 1), never the tenant's.
    to_endpoint = Receiver([tenant_secret])
    with serving(to_job) as job_url, serving(to_endpoint) as endpoint_url:
        endpoint = ok(
            await owner.post(
                "/webhooks/endpoints", json={"url": f"{endpoint_url}/all"}
            ),
            201,
        )
        assert isinstance(to_endpoint.secrets, list)
        to_endpoint.secrets.append(endpoint["secret"])

        accepted = await submit(
            owner, invert_graph((10, 20, 30)), webhook_url=f"{job_url}/job"
        )
        job_id = accepted["execution_id"]
        job = await wait_final(owner, job_id)
        assert job["status"] == "completed", job

        [mine] = await received(to_job, 1)
        [theirs] = await received(to_endpoint, 1)
        # Nothing more comes: one delivery per target.
        await asyncio.sleep(3)
        assert (len(to_job.received), len(to_endpoint.received)) == (1, 1)
    assert to_job.refused == to_endpoint.refused == []

    for delivery in (mine, theirs):
        assert delivery.body["type"] == "job.completed"
        assert delivery.body["data"]["execution_id"] == job_id
        assert delivery.body["data"]["status"] == "completed"
        [output] = delivery.body["data"]["outputs"]
        assert output["url"].startswith("http")
    assert (mine.path, mine.secret_index) == ("/job", 0)
    assert (theirs.path, theirs.secret_index) == ("/all", 1)
    assert mine.webhook_id != theirs.webhook_id

    listed = ok(await owner.get(f"/workflows/{job_id}/deliveries"))
    by_id = {item["id"]: item for item in listed["items"]}
    assert set(by_id) == {mine.webhook_id, theirs.webhook_id}
    assert by_id[mine.webhook_id]["endpoint_id"] is None
    assert by_id[theirs.webhook_id]["endpoint_id"] == endpoint["id"]
    assert {item["status"] for item in listed["items"]} == {"succeeded"}
    shown = ok(await owner.get(f"/webhooks/deliveries/{mine.webhook_id}"))
    [attempt] = shown["attempts"]
    assert attempt["status_code"] == 204


async def test_replay_is_a_new_attempt_with_the_same_id_signed_by_both_secrets(
    owner: httpx.AsyncClient,
) -> None:
    old_secret = (ok(await owner.get("/webhooks/secret")))["secret"]
    receiver = Receiver([old_secret])
    with serving(receiver) as url:
        accepted = await submit(owner, invert_graph((1, 2, 3)), webhook_url=url)
        await wait_final(owner, accepted["execution_id"])
        [first] = await received(receiver, 1)

        replayed = ok(
            await owner.post(f"/webhooks/deliveries/{first.webhook_id}/replay"), 202
        )
        assert replayed["id"] == first.webhook_id
        [_, again] = await received(receiver, 2)

        rotated = ok(await owner.post("/webhooks/secret/rotate"))
        new_secret = rotated["secret"]
        assert new_secret != old_secret
        assert rotated["previous_expires_at"] is not None
        ok(await owner.post(f"/webhooks/deliveries/{first.webhook_id}/replay"), 202)
        [*_, overlap] = await received(receiver, 3)

    assert again.webhook_id == first.webhook_id
    assert without_urls(again.body) == without_urls(first.body)
    assert overlap.webhook_id == first.webhook_id
    assert without_urls(overlap.body) == without_urls(first.body)
    # During the overlap each secret alone verifies the delivery.
    assert len(overlap.signatures) == 2
    for secret in (old_secret, new_secret):
        assert Webhook(secret).verify(overlap.raw, overlap.headers) == overlap.body
    shown = ok(await owner.get(f"/webhooks/deliveries/{first.webhook_id}"))
    assert [a["number"] for a in shown["attempts"]] == [1, 2, 3]
    assert shown["status"] == "succeeded"


@pytest.mark.parametrize(
    "url",
    [
        "http://10.0.0.1/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::ffff:192.168.0.1]/hook",
        "http://0.0.0.0:9000/hook",
    ],
)
async def test_a_webhook_url_inside_our_network_is_refused_at_submit(
    owner: httpx.AsyncClient, url: str
) -> None:
    job = await owner.post(
        "/workflows/execute",
        json={"workflow": invert_graph((0, 0, 0)), "webhook_url": url},
    )
    endpoint = await owner.post("/webhooks/endpoints", json={"url": url})

    assert job.status_code == 422, job.text
    assert [f["field"] for f in job.json()["fields"]] == ["webhook_url"]
    assert "is refused" in job.json()["fields"][0]["message"]
    assert endpoint.status_code == 422, endpoint.text
    assert [f["field"] for f in endpoint.json()["fields"]] == ["url"]
