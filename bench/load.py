"""The load `bench.submit` drives: concurrent asyncio clients on one aiohttp
session, each sending its next request as soon as its last was answered, for
a fixed time, and the submit bodies and headers `bench.backlog` shares.

aiohttp, not httpx: on the 2-core machine one httpx client (one pool or one
client per connection alike) fell from 180 requests/s at 8 connections to
52/s at 32 against the trivial route, so it measured itself; aiohttp held
about 1,050/s at 1, 8 and 32."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import aiohttp

from tests.e2e.support import invert_graph


@dataclass
class Load:
    """What one run of the load got: answer times of accepted requests, and
    how many answers were anything else."""

    seconds: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    refused: int = 0

    @property
    def per_s(self) -> float:
        return len(self.latencies_ms) / self.seconds if self.seconds else 0.0


def submit_body(index: int) -> dict[str, object]:
    """A model-free job, a different graph each time (so no cache or dedupe
    anywhere can answer it)."""
    colour = (index % 256, (index // 256) % 256, (index // 65536) % 256)
    return {"workflow": invert_graph(colour, prefix="bench")}


def submit_headers(key: str) -> dict[str, str]:
    """A fresh idempotency key per submit, so the idempotency record is
    written too, as a client's `submit()` does."""
    return {"Authorization": f"Bearer {key}", "Idempotency-Key": str(uuid.uuid4())}


async def run_load(
    session: aiohttp.ClientSession,
    request: Callable[[aiohttp.ClientSession, int], Awaitable[int]],
    *,
    concurrency: int,
    seconds: float,
    accepted: int = 202,
) -> Load:
    """`concurrency` clients in a closed loop for `seconds`; `request` answers
    the status code. A request that is still open when time is up still
    counts, so the run ends by itself within one answer's time."""
    load = Load()
    counter = iter(range(1 << 62))
    deadline = time.perf_counter() + seconds

    async def one_client() -> None:
        while time.perf_counter() < deadline:
            start = time.perf_counter()
            status = await request(session, next(counter))
            if status == accepted:
                load.latencies_ms.append((time.perf_counter() - start) * 1000)
            else:
                load.refused += 1

    began = time.perf_counter()
    await asyncio.gather(*(one_client() for _ in range(concurrency)))
    load.seconds = time.perf_counter() - began
    return load
