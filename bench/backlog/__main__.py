"""Submit, get, list and cancel against an empty queue and against a backlog
of `BENCH_BACKLOG` pending jobs (default 100,000), in one run, and how long an
executor takes to drain a slice of it.

The executor is stopped once the product is ready, so jobs just queue. Each
phase is `BENCH_ROUNDS` rounds (default 200) of one client: submit a job
(it joins the back of the queue), get it (its `queue_position` counts the
whole backlog ahead of it), list the tenant's first page, cancel it.

The backlog is written by a bulk path, not through the API (10^5 submits
would take minutes on a 2-core machine): copies of one job that was
submitted through the API, each with its own id, idempotency record and
acceptance number, of 100 other tenants (1,000 each, a tenant's default
queue limit), older than anything submitted after, and counted into the
queue's depth, in the benchmark's own namespaced schema. The relay has long
sent a pending job's `submitted` event, so no outbox row is written. Last
line: `backlog jobs=<n> worst_p99_ratio=<x>`.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import TextIO

import asyncpg
import httpx

from bench.load import submit_body, submit_headers
from bench.product import UNLIMITED, Running, percentile, running_product

OPERATIONS = ("submit", "get", "list", "cancel")
FILL_BATCH = 20_000
# Columns the bulk path sets itself; `priority_rank` is generated and
# `number` comes from the table's sequence.
OWN_COLUMNS = ("id", "created_at", "updated_at", "idempotency_key", "tenant_id")
# The backlog's tenants, each with an equal share: 1,000 jobs each of 10^5,
# the default queue limit of a tenant.
BACKLOG_TENANTS = 100
SKIPPED_COLUMNS = {"priority_rank", "number"}


@dataclass
class Phase:
    samples_ms: dict[str, list[float]] = field(
        default_factory=lambda: {name: [] for name in OPERATIONS}
    )
    # The queue position a job just submitted was given by `get`.
    last_position: int = 0


async def timed(
    phase: Phase, name: str, answer: Awaitable[httpx.Response]
) -> httpx.Response:
    start = time.perf_counter()
    response = await answer
    phase.samples_ms[name].append((time.perf_counter() - start) * 1000)
    if response.status_code >= 300:
        raise RuntimeError(f"{name} answered {response.status_code}: {response.text}")
    return response


async def one_phase(client: httpx.AsyncClient, key: str, rounds: int) -> Phase:
    phase = Phase()
    auth = {"Authorization": f"Bearer {key}"}
    for index in range(rounds):
        submitted = await timed(
            phase,
            "submit",
            client.post(
                "/workflows/execute",
                json=submit_body(index),
                headers=submit_headers(key),
            ),
        )
        job_id = submitted.json()["execution_id"]
        got = await timed(
            phase, "get", client.get(f"/workflows/{job_id}", headers=auth)
        )
        phase.last_position = got.json()["queue_position"]
        await timed(phase, "list", client.get("/workflows", headers=auth))
        await timed(
            phase, "cancel", client.post(f"/workflows/{job_id}/cancel", headers=auth)
        )
    return phase


def dsn(product: Running) -> str:
    return product.stack["DATABASE_URL"].replace(
        "postgresql+asyncpg://", "postgresql://"
    )


async def fill(product: Running, template: str, jobs: int) -> None:
    """`jobs` pending copies of the job `template`, as its submit wrote it,
    of `BACKLOG_TENANTS` other tenants (a tenant's own queue is bounded by
    its limit; the queue of a pool is not)."""
    schema = product.workflow_schema
    conn = await asyncpg.connect(dsn(product))
    try:
        names = [
            row["column_name"]
            for row in await conn.fetch(
                "SELECT column_name FROM information_schema.columns"
                " WHERE table_schema = $1 AND table_name = 'jobs'"
                " ORDER BY ordinal_position",
                schema,
            )
        ]
        copied = [n for n in names if n not in {*OWN_COLUMNS, *SKIPPED_COLUMNS}]
        columns = ", ".join(f'"{n}"' for n in [*OWN_COLUMNS, *copied])
        values = ", ".join(f't."{n}"' for n in copied)
        template_id = uuid.UUID(template)
        for start in range(0, jobs, FILL_BATCH):
            count = min(FILL_BATCH, jobs - start)
            async with conn.transaction():
                # Older than the template, by a microsecond each, in order.
                await conn.execute(
                    f"""
                    WITH copies AS (
                      INSERT INTO "{schema}".jobs ({columns})
                      SELECT gen_random_uuid(), t.created_at - age, t.created_at - age,
                             'bulk-' || n, 'bench-backlog-' || n % $5, {values}
                      FROM "{schema}".jobs t,
                           generate_series($2::bigint, $2::bigint + $4 - 1) n,
                           LATERAL (SELECT ($3 - n) * interval '1 microsecond') a(age)
                      WHERE t.id = $1
                      RETURNING id, tenant_id, idempotency_key, created_at
                    )
                    INSERT INTO "{schema}".idempotency_keys
                      (tenant_id, key, request_hash, job_id, created_at)
                    SELECT c.tenant_id, c.idempotency_key, k.request_hash, c.id,
                           c.created_at
                    FROM copies c,
                         (SELECT i.request_hash FROM "{schema}".idempotency_keys i
                          WHERE i.job_id = $1) k
                    """,
                    template_id,
                    start,
                    jobs,
                    count,
                    BACKLOG_TENANTS,
                )
                await conn.execute(
                    f"""
                    INSERT INTO "{schema}".queue_depth AS d
                      (pool, priority_rank, shard, pending)
                    SELECT t.pool, t.priority_rank, 0, $2::bigint
                    FROM "{schema}".jobs t WHERE t.id = $1
                    ON CONFLICT (pool, priority_rank, shard)
                    DO UPDATE SET pending = d.pending + excluded.pending
                    """,
                    template_id,
                    count,
                )
        # As autovacuum would soon after: statistics for the planner, and
        # the visibility map that lets counts read the index alone.
        await conn.execute(f'VACUUM ANALYZE "{schema}".jobs')
        await conn.execute(f'VACUUM ANALYZE "{schema}".idempotency_keys')
    finally:
        await conn.close()


async def completed(product: Running) -> int:
    conn = await asyncpg.connect(dsn(product))
    try:
        found = await conn.fetchval(
            f'SELECT count(*) FROM "{product.workflow_schema}".jobs'
            " WHERE status = 'completed'"
        )
        return int(found)
    finally:
        await conn.close()


async def drain(product: Running, jobs: int, limit_s: float) -> float | None:
    """Seconds an executor, started now, takes to finish `jobs` of the
    backlog; None when it did not within `limit_s`."""
    before = await completed(product)
    start = time.perf_counter()
    product.services["executor"].start()
    try:
        while time.perf_counter() - start < limit_s:
            if await completed(product) - before >= jobs:
                return time.perf_counter() - start
            await asyncio.sleep(0.2)
        return None
    finally:
        product.services["executor"].stop()


@dataclass
class Result:
    empty: Phase
    full: Phase
    fill_s: float
    drain_s: float | None


async def measure(product: Running, jobs: int, rounds: int, slice_: int) -> Result:
    async with httpx.AsyncClient(base_url=product.base_url, timeout=60) as client:
        await one_phase(client, product.key, 5)  # warm-up: connections, caches
        empty = await one_phase(client, product.key, rounds)
        template = await client.post(
            "/workflows/execute",
            json=submit_body(0),
            headers=submit_headers(product.key),
        )
        template.raise_for_status()
        start = time.perf_counter()
        await fill(product, template.json()["execution_id"], jobs)
        fill_s = time.perf_counter() - start
        full = await one_phase(client, product.key, rounds)
    drain_s = await drain(product, slice_, 120.0) if slice_ else None
    return Result(empty, full, fill_s, drain_s)


def report(result: Result, jobs: int, slice_: int, out: TextIO) -> float:
    out.write(
        f"backlog of {jobs} pending jobs written in {result.fill_s:.1f} s; "
        f"{len(result.full.samples_ms['submit'])} rounds per phase\n"
    )
    worst = 0.0
    for name in OPERATIONS:
        empty, full = result.empty.samples_ms[name], result.full.samples_ms[name]
        ratio = percentile(full, 0.99) / percentile(empty, 0.99)
        worst = max(worst, ratio)
        out.write(
            f"{name:7} empty p50 {statistics.median(empty):7.2f} p99 "
            f"{percentile(empty, 0.99):7.2f} ms | backlog p50 "
            f"{statistics.median(full):7.2f} p99 {percentile(full, 0.99):7.2f} ms"
            f" | p99 ratio {ratio:5.2f}\n"
        )
    out.write(
        f"queue_position of the last job submitted: {result.full.last_position}"
        f" (empty queue: {result.empty.last_position})\n"
    )
    if slice_:
        drained = (
            f"{result.drain_s:.1f} s ({slice_ / result.drain_s:.1f} jobs/s)"
            if result.drain_s is not None
            else "not within 120 s"
        )
        out.write(f"drain of {slice_} jobs by one executor: {drained}\n")
    verdict = "met" if worst <= 1.5 else "NOT met"
    out.write(f"goal: every p99 within 1.5x of the empty queue's: {verdict}\n")
    out.write(f"backlog jobs={jobs} worst_p99_ratio={worst:.2f}\n")
    return worst


def main() -> int:
    jobs = int(os.environ.get("BENCH_BACKLOG", "100000"))
    rounds = int(os.environ.get("BENCH_ROUNDS", "200"))
    slice_ = int(os.environ.get("BENCH_DRAIN", "20"))
    with running_product(UNLIMITED, executor=False) as product:
        result = asyncio.run(measure(product, jobs, rounds, slice_))
    report(result, jobs, slice_, sys.stdout)
    # The backlog is ahead of every job submitted after it.
    return 0 if result.full.last_position > jobs else 1


if __name__ == "__main__":
    sys.exit(main())
