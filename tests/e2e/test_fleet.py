"""A fleet of four executors, each with its own ComfyUI, on a burst of mixed
priorities: every job completes, each runs exactly once, and the queue's
priorities hold across the fleet."""

from __future__ import annotations

import asyncio
from collections import Counter

import httpx
import pytest

from bench.fleet.fleet import (
    Fleet,
    mixed_priorities,
    overtaken,
    run_once_failures,
    start_slack,
)
from tests.e2e.support import Product, invert_graph, wait_final, wait_http_ok

# Four ComfyUIs starting at once take over a minute on a loaded 2-core
# machine, and the product's own start counts when this test runs first.
pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(600)]

JOBS = 60
EXECUTORS = 4
SUBMITTERS = 8


async def submit_with_priority(
    client: httpx.AsyncClient, index: int, priority: str
) -> str:
    """Submit one job; a 429 of the submit rate limit is waited out."""
    body = {
        "workflow": invert_graph((index, 61, 61), prefix="fleet"),
        "priority": priority,
    }
    while True:
        answer = await client.post("/workflows/execute", json=body)
        if answer.status_code != 429:
            assert answer.status_code == 202, answer.text
            job_id: str = answer.json()["execution_id"]
            return job_id
        await asyncio.sleep(float(answer.headers.get("Retry-After", "1")))


async def test_four_executors_drain_a_burst_once_each_by_priority(
    product: Product,
) -> None:
    # The queue is filled while no executor of the pool runs, so that each
    # claim takes the head of a queue that is complete: the order of starts
    # is then the queue's, up to the jobs other executors hold at a time.
    own = product.services["executor"]
    own.stop()
    extra = Fleet.of(own, product.stack, EXECUTORS - 1, "fleet")
    fleet = Fleet([own, *extra.executors])
    priorities = mixed_priorities(JOBS)
    try:
        # Two tenants, half each, so both submit within their burst
        # allowance; a few at a time, as clients would.
        async with product.client() as a, product.client(product.key_b) as b:
            clients = (a, b)
            gate = asyncio.Semaphore(SUBMITTERS)

            async def submit_one(index: int, priority: str) -> str:
                async with gate:
                    return await submit_with_priority(
                        clients[index % 2], index, priority
                    )

            ids = await asyncio.gather(
                *(submit_one(i, p) for i, p in enumerate(priorities))
            )
            fleet.start()
            for url in fleet.ready_urls:
                await wait_http_ok(url)
            jobs = [
                await wait_final(clients[i % 2], job_id) for i, job_id in enumerate(ids)
            ]
        starts = [start for start in fleet.starts() if start.job_id in set(ids)]
        prompts = fleet.prompts_per_job()
    finally:
        extra.stop()
        if not own.alive:
            own.start()
    assert [job["status"] for job in jobs] == ["completed"] * JOBS, jobs
    assert [job["attempt"] for job in jobs] == [1] * JOBS
    assert run_once_failures(ids, starts, prompts) == []
    by_executor = Counter(start.executor for start in starts)
    assert len(by_executor) >= 2, f"one executor ran the whole burst: {by_executor}"
    priority = dict(zip(ids, priorities, strict=True))
    worst = overtaken((start.job_id for start in starts), priority)
    # Unordered, a job would go ahead of about a third of the burst.
    assert worst <= start_slack(EXECUTORS), [
        (priority[start.job_id], start.executor) for start in starts
    ]
