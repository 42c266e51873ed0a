"""What authentication adds to a submit: the same submit with an access token
(verified in the gateway against the cached JWKS) and with an API key (checked
by the auth service, then cached), against a bootstrap key (a digest compared
in the gateway) as the baseline, in one run.

Rounds take the three credentials in turn, in a rotating order, so drift and
the queue's growth hit all alike. Only the submit's answer is timed; the
executor runs the jobs meanwhile, as it would in production.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import time
import uuid
from typing import Any

import httpx

from bench.product import UNLIMITED, Running, percentile, running_product
from tests.e2e.support import invert_graph

PASSWORD = "bench password, long enough"
GOALS_MS = {"access token": 1.0, "API key": 2.0}


async def signed_up(client: httpx.AsyncClient) -> str:
    """A new user, a tenant of its own; answers its access token."""
    email = f"bench-{uuid.uuid4().hex[:8]}@example.com"
    registered = await client.post(
        "/auth/register", json={"email": email, "password": PASSWORD}
    )
    registered.raise_for_status()
    tokens = await client.post(
        "/auth/token", data={"username": email, "password": PASSWORD}
    )
    tokens.raise_for_status()
    access: str = tokens.json()["access_token"]
    return access


async def credentials(client: httpx.AsyncClient, bootstrap: str) -> dict[str, str]:
    """One tenant per credential, so each tenant's queue and quota checks see
    the same number of jobs and only verification differs."""
    access = await signed_up(client)
    key = await client.post(
        "/auth/api-keys",
        json={"name": "bench", "scopes": ["workflows:write"]},
        headers={"Authorization": f"Bearer {await signed_up(client)}"},
    )
    key.raise_for_status()
    return {
        "bootstrap key": bootstrap,
        "access token": access,
        "API key": key.json()["secret"],
    }


async def submit_s(client: httpx.AsyncClient, credential: str, index: int) -> float:
    graph = invert_graph((index % 256, (index // 256) % 256, 91), prefix="bench")
    start = time.perf_counter()
    answer = await client.post(
        "/workflows/execute",
        json={"workflow": graph},
        headers={"Authorization": f"Bearer {credential}"},
    )
    elapsed = time.perf_counter() - start
    if answer.status_code != 202:
        raise RuntimeError(f"submit answered {answer.status_code}: {answer.text}")
    return elapsed


async def measure(product: Running, rounds: int) -> dict[str, list[float]]:
    async with httpx.AsyncClient(base_url=product.base_url, timeout=60) as client:
        creds = await credentials(client, product.key)
        names = list(creds)
        for warmup in range(10):
            for name in names:
                await submit_s(client, creds[name], warmup)
        samples: dict[str, list[float]] = {name: [] for name in names}
        for index in range(rounds):
            shift = index % len(names)
            for name in names[shift:] + names[:shift]:
                elapsed = await submit_s(client, creds[name], index)
                samples[name].append(elapsed * 1000)
    return samples


def report(samples: dict[str, list[float]], out: Any) -> None:
    baseline = samples["bootstrap key"]
    out.write(f"submits per credential: {len(baseline)}\n")
    for name, values in samples.items():
        p50 = statistics.median(values)
        out.write(
            f"{name:14} p50 {p50:7.2f} ms  p99 {percentile(values, 0.99):7.2f} ms"
            f"  ratio to bootstrap at p50 {p50 / statistics.median(baseline):5.2f}\n"
        )
    for name, goal in GOALS_MS.items():
        # Paired by round: both submits of a round share the machine's state,
        # so their difference is steadier than a difference of medians.
        added = statistics.median(
            ours - base for ours, base in zip(samples[name], baseline, strict=True)
        )
        verdict = "met" if added < goal else "NOT met"
        out.write(
            f"added p50 {name}: {added:+.2f} ms, the median of per-round "
            f"differences (goal < {goal} ms: {verdict})\n"
        )


def main() -> int:
    rounds = int(os.environ.get("BENCH_JOBS", "300"))
    with running_product(UNLIMITED) as product:
        samples = asyncio.run(measure(product, rounds))
    report(samples, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
