"""A fleet of 1, 2 and 4 executors in one pool, each with its own ComfyUI, on
a burst of `BENCH_FLEET_JOBS` model-free jobs (default 400) of mixed
priorities submitted through the REST API.

Each round fills the queue first, with no executor running, then starts the
whole fleet at once. It checks that every job ran exactly once (one
`executor.job.started` in the fleet's logs, one prompt in its ComfyUIs'
histories, one attempt and `completed` in the job's record: anything else
is printed as a FAILURE and the benchmark exits non-zero), that priorities
drained first (no job started ahead of more higher-priority jobs than the
other executors could have held at that moment), and measures jobs/s with
the whole fleet at work: from the moment its last executor started its first
job to the last completion. The machine's cores in use over that window,
per group of processes, say what limits the curve. `BENCH_FLEET_SIZES`
(default `1,2,4`) picks the fleet sizes; the burst is one tenant's, whose
running limit is out of the way unless `BENCH_FLEET_MAX_RUNNING` sets it (the
product's default is 32). Last line:
`fleet executors=<n> jobs_per_s=<x> scaling=<x_n/x_1>` for the largest n.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import TextIO

import aiohttp
import asyncpg

from bench.fleet.cpu import CpuTimeline
from bench.fleet.fleet import (
    PRIORITIES,
    Fleet,
    mixed_priorities,
    overtaken,
    run_once_failures,
    start_slack,
)
from bench.product import UNLIMITED, Running, running_product
from comfyserve.runtime.database import asyncpg_dsn
from infra.runner import LOCAL
from tests.e2e.support import invert_graph

SUBMITTERS = 16
FINAL = ("completed", "failed", "cancelled")


@dataclass(frozen=True)
class Record:
    job_id: str
    priority: str
    status: str
    attempt: int
    completed_at: datetime | None


@dataclass
class Round:
    size: int
    submit_s: float
    jobs_per_s: float
    window_s: float
    in_window: int
    start_overtaken: int
    completion_overtaken: int
    failures: list[str]
    cores: dict[str, float]
    total_s: float
    longest_idle_s: float


async def submit_burst(base_url: str, key: str, priorities: list[str]) -> list[str]:
    """One job per priority given, `SUBMITTERS` at a time, in order of the list;
    each a different colour, so no cache answers for any."""
    ids: list[str] = [""] * len(priorities)
    order = iter(enumerate(priorities))
    tag = uuid.uuid4().int % 256
    headers = {"Authorization": f"Bearer {key}"}

    async def submitter(session: aiohttp.ClientSession) -> None:
        for index, priority in order:
            colour = (index % 256, (index // 256) % 256, tag)
            body = {
                "workflow": invert_graph(colour, prefix="fleet"),
                "priority": priority,
            }
            async with session.post(
                f"{base_url}/workflows/execute", json=body, headers=headers
            ) as answer:
                if answer.status != 202:
                    raise RuntimeError(
                        f"submit answered {answer.status}: {await answer.text()}"
                    )
                ids[index] = (await answer.json())["execution_id"]

    async with aiohttp.ClientSession() as session:
        await asyncio.gather(*(submitter(session) for _ in range(SUBMITTERS)))
    return ids


async def records(
    conn: asyncpg.Connection, schema: str, ids: list[str]
) -> list[Record]:
    rows = await conn.fetch(
        f'SELECT id::text, priority, status, attempt, completed_at FROM "{schema}".jobs'
        " WHERE id = ANY($1::uuid[])",
        ids,
    )
    return [Record(*row) for row in rows]


async def wait_final(
    conn: asyncpg.Connection, schema: str, ids: list[str], limit_s: float
) -> None:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        done = await conn.fetchval(
            f'SELECT count(*) FROM "{schema}".jobs'
            " WHERE id = ANY($1::uuid[]) AND status = ANY($2::text[])",
            ids,
            list(FINAL),
        )
        if done == len(ids):
            return
        await asyncio.sleep(0.5)
    raise RuntimeError(f"the burst did not end within {limit_s:.0f} s")


def stack_pids() -> dict[str, list[int]]:
    """The local stack's servers that jobs go through, by their pid files
    (shared with whatever else runs on the machine)."""
    files = {
        "postgres": LOCAL / "postgres" / "data" / "postmaster.pid",
        **{name: LOCAL / "run" / f"{name}.pid" for name in ("kafka", "redis", "s3")},
    }
    found: dict[str, list[int]] = {}
    for name, path in files.items():
        with contextlib.suppress(OSError, ValueError, IndexError):
            found[name] = [int(path.read_text().split()[0])]
    return found


def service_groups(product: Running, fleet: Fleet) -> dict[str, list[int]]:
    groups = stack_pids()
    for name, process in product.services.services.items():
        if process.process is not None and name != "executor":
            groups[name] = [process.process.pid]
    groups["executors+comfyui"] = [
        e.process.pid for e in fleet.executors if e.process is not None
    ]
    return groups


async def one_round(product: Running, size: int, jobs: int) -> Round:
    priorities = mixed_priorities(jobs, seed=size)
    began = time.perf_counter()
    ids = await submit_burst(product.base_url, product.key, priorities)
    submit_s = time.perf_counter() - began
    fleet = Fleet.of(
        product.services["executor"],
        product.stack,
        size,
        f"fleet-{size}-{uuid.uuid4().hex[:6]}",
    )
    conn = await asyncpg.connect(asyncpg_dsn(product.stack["DATABASE_URL"]))
    timeline = CpuTimeline(lambda: service_groups(product, fleet))
    sampler = asyncio.create_task(timeline.run())
    started = time.perf_counter()
    fleet.start()
    try:
        await wait_final(conn, product.workflow_schema, ids, limit_s=30 + jobs * 2.0)
        total_s = time.perf_counter() - started
        found = await records(conn, product.workflow_schema, ids)
        starts = [s for s in fleet.starts() if s.job_id in set(ids)]
        prompts = fleet.prompts_per_job()
        idle_s = fleet.longest_idle_s(set(ids))
    finally:
        sampler.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sampler
        fleet.stop()
        await conn.close()
    priority = {r.job_id: r.priority for r in found}
    failures = run_once_failures(ids, starts, prompts)
    failures += [
        f"job {r.job_id}: {r.status}, attempt {r.attempt}"
        for r in found
        if r.status != "completed" or r.attempt != 1
    ]
    # The whole fleet at work: from the last executor's first start.
    first_of: dict[int, datetime] = {}
    for start in starts:
        first_of.setdefault(start.executor, start.at)
    window_start = max(first_of.values())
    ended = sorted(r.completed_at for r in found if r.completed_at is not None)
    window_end = ended[-1]
    in_window = sum(1 for at in ended if at > window_start)
    window_s = (window_end - window_start).total_seconds()
    by_completion = [
        r.job_id
        for r in sorted(found, key=lambda r: (r.completed_at is None, r.completed_at))
    ]
    start_overtaken = overtaken((s.job_id for s in starts), priority)
    if len(first_of) < size:
        failures.append(f"only {len(first_of)} of {size} executors ran a job")
    if start_overtaken > start_slack(size):
        failures.append(
            f"a job started ahead of {start_overtaken} higher-priority jobs"
            f" (at most {start_slack(size)} may be held by other executors)"
        )
    return Round(
        size=size,
        submit_s=submit_s,
        jobs_per_s=in_window / window_s if window_s > 0 else 0.0,
        window_s=window_s,
        in_window=in_window,
        start_overtaken=start_overtaken,
        completion_overtaken=overtaken(by_completion, priority),
        failures=failures,
        cores=timeline.share(window_start.timestamp(), window_end.timestamp()),
        total_s=total_s,
        longest_idle_s=idle_s,
    )


def report(rounds: list[Round], jobs: int, out: TextIO) -> None:
    load = os.getloadavg()
    out.write(
        f"{jobs} jobs per round ({', '.join(PRIORITIES)} in thirds, shuffled);"
        f" {os.cpu_count()} cores; load average at the end"
        f" {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}\n"
    )
    for one in rounds:
        cores = ", ".join(
            f"{name} {value:.2f}" for name, value in sorted(one.cores.items())
        )
        out.write(
            f"executors={one.size}: {one.jobs_per_s:.2f} jobs/s over"
            f" {one.window_s:.1f} s ({one.in_window} jobs with the whole fleet"
            f" at work; {one.total_s:.1f} s from the fleet's start to the last"
            f" job, burst submitted in {one.submit_s:.1f} s); most higher-priority"
            f" jobs one job started ahead of: {one.start_overtaken}"
            f" (allowed {start_slack(one.size)}), completed ahead of:"
            f" {one.completion_overtaken}; longest an executor waited between"
            f" jobs: {one.longest_idle_s:.1f} s\n"
            f"  cores busy: {cores}\n"
        )
        for failure in one.failures:
            out.write(f"  FAILURE: {failure}\n")
    base = rounds[0].jobs_per_s
    last = rounds[-1]
    scaling = last.jobs_per_s / base if base else 0.0
    out.write(
        f"fleet executors={last.size} jobs_per_s={last.jobs_per_s:.2f}"
        f" scaling={scaling:.2f}\n"
    )


async def measure(product: Running, jobs: int, sizes: list[int]) -> list[Round]:
    return [await one_round(product, size, jobs) for size in sizes]


def main() -> int:
    jobs = int(os.environ.get("BENCH_FLEET_JOBS", "400"))
    sizes = [int(n) for n in os.environ.get("BENCH_FLEET_SIZES", "1,2,4").split(",")]
    # A tenant's running limit out of the way too (the burst is one tenant's),
    # unless BENCH_FLEET_MAX_RUNNING sets it: see bench/README.md, Fleet.
    settings = {
        **UNLIMITED,
        "workflow": {
            **UNLIMITED["workflow"],
            "WORKFLOW_TENANT_MAX_RUNNING": os.environ.get(
                "BENCH_FLEET_MAX_RUNNING", "100000"
            ),
        },
    }
    with running_product(settings, executor=False) as product:
        rounds = asyncio.run(measure(product, jobs, sizes))
    report(rounds, jobs, sys.stdout)
    failed = [f for one in rounds for f in one.failures]
    if failed:
        sys.stderr.write(
            f"fleet: {len(failed)} FAILURES: a job did not run exactly once,"
            " or priorities did not hold; see above\n"
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
