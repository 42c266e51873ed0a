"""Faults: every accepted job still ends in one final state, with no duplicates."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncGenerator, AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer  # type: ignore[import-untyped]
from minio import Minio
from pydantic import ValidationError

from comfyserve.contracts import topics
from comfyserve.contracts.events import JobStarted, parse_event
from infra.runner import ServiceProcess, free_port
from tests.e2e.support import (
    Product,
    invert_graph,
    slow_graph,
    submit,
    wait_final,
    wait_for_status,
    wait_http_ok,
)

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
SLOW_BATCH = 8  # slow_graph saves a batch of eight images


def stack_command(*args: str) -> None:
    subprocess.run(
        [sys.executable, str(ROOT / "infra" / "stack.py"), *args], check=True
    )


async def assert_single_final_state(
    client: httpx.AsyncClient, ids: list[str], outputs: dict[str, int] | None = None
) -> None:
    """Each job completes once, keeps its final state, and has each output once.

    `outputs` gives the expected count per job (default 1: one image saved).
    """
    for job_id in ids:
        job = await wait_final(client, job_id, limit_s=300)
        assert job["status"] == "completed", job
        expected = (outputs or {}).get(job_id, 1)
        files = {o["file_id"] for o in job["outputs"]}
        names = {(o["node_id"], o["filename"]) for o in job["outputs"]}
        assert len(job["outputs"]) == len(files) == len(names) == expected, job[
            "outputs"
        ]
        again = (await client.get(f"/workflows/{job_id}")).json()
        assert again["status"] == job["status"]
        assert again["completed_at"] == job["completed_at"]


async def test_executor_killed_mid_job_then_restarted(product: Product) -> None:
    executor = product.services["executor"]
    async with product.client() as client:
        slow = await submit(client, slow_graph(3, 21))
        quick = [await submit(client, invert_graph((i, 2, 3))) for i in range(3)]
        await wait_for_status(client, slow["execution_id"], {"running"})
        executor.kill()
        executor.start()
        await assert_single_final_state(
            client,
            [slow["execution_id"], *(q["execution_id"] for q in quick)],
            {slow["execution_id"]: SLOW_BATCH},
        )
        job = (await client.get(f"/workflows/{slow['execution_id']}")).json()
        assert job["attempt"] >= 2


async def test_comfyui_killed_under_the_executor(product: Product) -> None:
    async with product.client() as client:
        slow = await submit(client, slow_graph(3, 22))
        await wait_for_status(client, slow["execution_id"], {"running"})
        comfy = comfyui_pid(product.services["executor"])
        os.kill(comfy, signal.SIGKILL)
        await assert_single_final_state(
            client, [slow["execution_id"]], {slow["execution_id"]: SLOW_BATCH}
        )
        after = await submit(client, invert_graph((4, 4, 4)))
        await assert_single_final_state(client, [after["execution_id"]])


def comfyui_pid(executor: ServiceProcess) -> int:
    """The ComfyUI child process of the executor."""
    assert executor.process is not None
    children = Path(
        f"/proc/{executor.process.pid}/task/{executor.process.pid}/children"
    )
    for pid in children.read_text().split():
        if "main.py" in Path(f"/proc/{pid}/cmdline").read_text():
            return int(pid)
    raise AssertionError("the executor runs no ComfyUI child")


async def test_kafka_restarted_while_jobs_queued(product: Product) -> None:
    async with product.client() as client:
        blocker = await submit(client, slow_graph(2, 23))
        queued = [await submit(client, invert_graph((i, 9, 9))) for i in range(4)]
        stack_command("restart", "kafka")
        ids = [blocker["execution_id"], *(q["execution_id"] for q in queued)]
        await assert_single_final_state(
            client, ids, {blocker["execution_id"]: SLOW_BATCH}
        )


async def test_workflow_service_restarted_while_events_in_flight(
    product: Product,
) -> None:
    workflow = product.services["workflow"]
    async with product.client() as client:
        ids = [
            (await submit(client, invert_graph((i, 5, 5))))["execution_id"]
            for i in range(5)
        ]
        workflow.signal(signal.SIGKILL)
        workflow.stop()
        workflow.start()
        await assert_single_final_state(client, ids)


def extra_executor(product: Product, number: int) -> tuple[ServiceProcess, str]:
    """Another executor of the same pool, with its own ComfyUI; and the URL
    that answers once it takes jobs."""
    first = product.services["executor"]
    port = free_port()
    env = {
        **first.env,
        "EXECUTOR_HTTP_PORT": str(port),
        "EXECUTOR_SCRATCH_DIR": f"{first.env['EXECUTOR_SCRATCH_DIR']}-{number}",
    }
    process = ServiceProcess("executor", env, first.log_dir / f"executor-{number}")
    return process, f"http://127.0.0.1:{port}/health/ready"


async def runner_of(job_id: str, executors: list[ServiceProcess]) -> ServiceProcess:
    """The executor that started `job_id`, as its own log says."""
    async with asyncio.timeout(60):
        while True:
            for executor in executors:
                log = executor.log_dir / f"{executor.name}.log"
                lines = log.read_text(errors="replace").splitlines()
                if any(
                    job_id in line and "executor.job.started" in line for line in lines
                ):
                    return executor
            await asyncio.sleep(0.2)


@pytest.fixture
async def second_executor(product: Product) -> AsyncIterator[ServiceProcess]:
    second, ready = extra_executor(product, 2)
    second.start()
    # Submit only once it takes jobs, or the first worker drains the burst.
    await wait_http_ok(ready)
    yield second
    second.stop()


async def started_events(
    bootstrap: str, job_ids: set[str]
) -> AsyncGenerator[JobStarted, None]:
    consumer = AIOKafkaConsumer(
        topics.STARTED,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        group_id=None,
    )
    await consumer.start()
    try:
        async for record in consumer:
            try:
                event = parse_event(record.value)
            except ValidationError:  # other tests' poison records share the topic
                continue
            if isinstance(event, JobStarted) and event.subject in job_ids:
                yield event
    finally:
        await consumer.stop()


async def test_two_executors_share_a_burst_without_running_a_job_twice(
    product: Product, second_executor: ServiceProcess
) -> None:
    async with product.client() as client:
        ids = [
            (await submit(client, invert_graph((i, 7, 7))))["execution_id"]
            for i in range(20)
        ]
        await assert_single_final_state(client, ids)
        jobs: list[dict[str, Any]] = [
            (await client.get(f"/workflows/{job_id}")).json() for job_id in ids
        ]
    assert all(job["attempt"] == 1 for job in jobs)
    starts: Counter[str] = Counter()
    workers: set[str] = set()
    bootstrap = product.stack["KAFKA_BOOTSTRAP_SERVERS"]
    async with (
        asyncio.timeout(60),
        contextlib.aclosing(started_events(bootstrap, set(ids))) as events,
    ):
        async for event in events:
            starts[event.subject] += 1
            workers.add(event.data.worker_id)
            if len(starts) == len(ids):
                break
    assert set(starts) == set(ids)
    assert max(starts.values()) == 1
    assert len(workers) == 2, "both executors took part"


@pytest.mark.parametrize("outage_s", [20, 60])
async def test_the_broker_away_mid_job(product: Product, outage_s: int) -> None:
    """Liveness does not ride on Kafka: the running attempt is neither declared
    dead nor run twice, and its outcome reaches the job once the broker is
    back, as do jobs submitted meanwhile."""
    async with product.client() as client:
        running = await submit(client, slow_graph(4, 31 + outage_s))
        await wait_for_status(client, running["execution_id"], {"running"})
        stack_command("down", "kafka")
        try:
            during = await submit(client, invert_graph((outage_s, 1, 1)))
            await asyncio.sleep(outage_s)
        finally:
            stack_command("up", "kafka")
        ids = [running["execution_id"], during["execution_id"]]
        await assert_single_final_state(
            client, ids, {running["execution_id"]: SLOW_BATCH}
        )
        job = (await client.get(f"/workflows/{running['execution_id']}")).json()
    assert job["attempt"] == 1, "the live worker's attempt was taken from it"
    assert product.services["executor"].restarts == 0
    assert product.services["executor"].alive


async def test_a_joining_executor_takes_work_while_the_others_run_long_jobs(
    product: Product,
) -> None:
    """Three executors busy with long jobs; a fourth joins and runs the queued
    job at once. No group rebalance waits on a running job any more."""
    helpers = [extra_executor(product, number) for number in (3, 4)]
    for process, _ in helpers:
        process.start()
    fourth, fourth_ready = extra_executor(product, 5)
    try:
        for _, ready in helpers:
            await wait_http_ok(ready)
        async with product.client() as client:
            long = [await submit(client, slow_graph(60, 40 + i)) for i in range(3)]
            for job in long:
                await wait_for_status(client, job["execution_id"], {"running"})
            queued = await submit(client, invert_graph((4, 4, 4)))
            fourth.start()
            await wait_http_ok(fourth_ready)
            done = await wait_final(client, queued["execution_id"], limit_s=120)
            assert done["status"] == "completed", done
            statuses = [
                (await client.get(f"/workflows/{job['execution_id']}")).json()["status"]
                for job in long
            ]
            assert statuses == ["running"] * 3, "the long jobs were held up or moved"
            for job in long:
                await client.post(f"/workflows/{job['execution_id']}/cancel")
            for job in long:
                assert (await wait_final(client, job["execution_id"]))[
                    "status"
                ] == "cancelled"
    finally:
        for process in (*(p for p, _ in helpers), fourth):
            process.stop()


async def test_two_attempts_race_on_one_output_slot(
    product: Product, second_executor: ServiceProcess
) -> None:
    """The first worker freezes mid-job, loses its lease, and wakes up after a
    second attempt took over: only the attempt that ends the job owns outputs,
    and the loser's objects are deleted."""
    executors = [product.services["executor"], second_executor]
    s3 = Minio(
        product.stack["S3_ENDPOINT"],
        access_key=product.stack["S3_ACCESS_KEY"],
        secret_key=product.stack["S3_SECRET_KEY"],
        secure=product.stack["S3_SECURE"] == "true",
        region=product.stack["S3_REGION"],
    )
    bucket = product.stack["S3_BUCKET"]
    async with product.client() as client:
        # Occupy one worker, so the other takes the racing job.
        blocker = await submit(client, slow_graph(2, 51))
        await wait_for_status(client, blocker["execution_id"], {"running"})
        racing = await submit(client, slow_graph(3, 52))
        job_id = racing["execution_id"]
        running = await wait_for_status(client, job_id, {"running"})
        # Either worker may have claimed the blocker: freeze the racing one.
        first = await runner_of(job_id, executors)
        first.signal(signal.SIGSTOP)
        try:
            retried = await wait_for_status(client, job_id, {"pending", "running"})
            async with asyncio.timeout(120):
                while retried["attempt"] < 2:
                    await asyncio.sleep(0.5)
                    retried = (await client.get(f"/workflows/{job_id}")).json()
        finally:
            first.signal(signal.SIGCONT)
        await assert_single_final_state(
            client,
            [blocker["execution_id"], job_id],
            {blocker["execution_id"]: SLOW_BATCH, job_id: SLOW_BATCH},
        )
        job = (await client.get(f"/workflows/{job_id}")).json()
    assert running["attempt"] == 1
    assert job["attempt"] == 2
    tenant_prefix = next(
        o.object_name
        for o in s3.list_objects(bucket, prefix="outputs/", recursive=True)
        if f"/{job_id}/" in o.object_name
    ).split(f"/{job_id}/")[0]
    async with asyncio.timeout(120):
        while True:
            names = [
                o.object_name
                for o in s3.list_objects(
                    bucket, prefix=f"{tenant_prefix}/{job_id}/", recursive=True
                )
            ]
            if names and all(f"/{job_id}/2/" in name for name in names):
                break
            await asyncio.sleep(1)
    assert len(names) == SLOW_BATCH
