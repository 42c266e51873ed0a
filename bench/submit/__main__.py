"""Accepted submissions per second through the REST API, against a trivial
FastAPI route on the same machine as the ceiling, in one run.

Every durability guarantee is on: each accepted submit is a job row, an
idempotency record (a fresh `Idempotency-Key` each) and an outbox event in one
transaction, relayed to Kafka. The executor is stopped once the product is
ready, so jobs just queue. The same client (aiohttp), at the same concurrency, then
drives the trivial route for the same time, the two taking turns of a few
seconds so that both see the same load on a shared machine.

`BENCH_SECONDS` (default 20) is each phase's length, `BENCH_CLIENTS`
(default 32) the concurrent clients. Last line:
`submit accepted_per_s=<x> ceiling_per_s=<y> p99_ms=<z>`.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import TextIO

import aiohttp

from bench.load import Load, run_load, submit_body, submit_headers
from bench.product import UNLIMITED, percentile, running_product
from infra.runner import free_port

WARMUP_S = 1.0
# Each turn of one server before the other's.
SLICE_S = 4.0
# Rate goal: this many accepted per second, or half the ceiling if that is lower.
GOAL_PER_S = 1000.0
GOAL_OF_CEILING = 0.5


@contextmanager
def trivial_route() -> Iterator[str]:
    """The ceiling's server, one uvicorn process like the gateway's."""
    port = free_port()
    command = [sys.executable, "-m", "uvicorn", "bench.submit.ceiling:app"]
    command += ["--port", str(port), "--log-level", "warning", "--no-access-log"]
    server = subprocess.Popen(command, stdin=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{url}/docs", timeout=1).close()
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the trivial route did not start") from None
                time.sleep(0.1)
        yield url
    finally:
        server.terminate()
        server.wait(10)


def submitter(key: str) -> Callable[[aiohttp.ClientSession, int], Awaitable[int]]:
    async def submit(session: aiohttp.ClientSession, index: int) -> int:
        async with session.post(
            "/workflows/execute", json=submit_body(index), headers=submit_headers(key)
        ) as answer:
            await answer.read()
            return answer.status

    return submit


async def turn(base_url: str, key: str, clients: int, seconds: float) -> Load:
    # A session per turn: connections idle through the other server's turn
    # would outlive uvicorn's keep-alive and be closed under the client.
    connector = aiohttp.TCPConnector(limit=clients)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(
        base_url, connector=connector, timeout=timeout
    ) as session:
        return await run_load(
            session, submitter(key), concurrency=clients, seconds=seconds
        )


async def drive(
    base_url: str, key: str, ceiling: str, clients: int, seconds: float
) -> tuple[Load, Load]:
    """Both servers in turns of `SLICE_S`, so both see the machine's load as
    it comes and goes (one phase after the other measured the load's swings:
    on the shared machine the ceiling alone moved 5x between runs)."""
    targets = ((base_url, key), (ceiling, "unused"))
    for url, secret in targets:
        await turn(url, secret, clients, WARMUP_S)
    totals = (Load(), Load())
    left = seconds
    while left > 0:
        length = min(SLICE_S, left)
        for (url, secret), total in zip(targets, totals, strict=True):
            load = await turn(url, secret, clients, length)
            total.seconds += load.seconds
            total.latencies_ms.extend(load.latencies_ms)
            total.refused += load.refused
        left -= length
    return totals


def report(name: str, load: Load, out: TextIO) -> None:
    values = load.latencies_ms or [0.0]
    out.write(
        f"{name:16} {load.per_s:8.1f} accepted/s  p50 {statistics.median(values):7.2f}"
        f" ms  p99 {percentile(values, 0.99):7.2f} ms  refused {load.refused}\n"
    )


def measure(seconds: float, clients: int, out: TextIO) -> tuple[Load, Load]:
    with running_product(UNLIMITED, executor=False) as product, trivial_route() as url:
        ours, ceiling = asyncio.run(
            drive(product.base_url, product.key, url, clients, seconds)
        )
    out.write(f"{clients} clients, {seconds:.0f} s each\n")
    report("through the API", ours, out)
    report("trivial route", ceiling, out)
    goal = min(GOAL_PER_S, GOAL_OF_CEILING * ceiling.per_s)
    verdict = "met" if ours.per_s >= goal else "NOT met"
    out.write(
        f"ratio to the ceiling {ours.per_s / ceiling.per_s:.2f}; "
        f"goal >= {goal:.0f}/s: {verdict}\n"
    )
    p99 = percentile(ours.latencies_ms or [0.0], 0.99)
    out.write(
        f"submit accepted_per_s={ours.per_s:.1f} ceiling_per_s={ceiling.per_s:.1f}"
        f" p99_ms={p99:.1f}\n"
    )
    return ours, ceiling


def main() -> int:
    seconds = float(os.environ.get("BENCH_SECONDS", "20"))
    clients = int(os.environ.get("BENCH_CLIENTS", "32"))
    ours, _ = measure(seconds, clients, sys.stdout)
    return 0 if ours.latencies_ms and not ours.refused else 1


if __name__ == "__main__":
    sys.exit(main())
