"""Several delivery loops over one schema, and a notifier killed mid-retry:
the schedule lives in Postgres, so work is shared, nothing is sent twice at
once and nothing is lost."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from comfyserve.contracts.events import (
    DeliveryDead,
    FinalStatus,
    JobFinished,
    JobFinishedData,
    dump_event,
)
from comfyserve.notifier.db import create_engine, migrate
from comfyserve.notifier.deliveries.sender import HttpSender
from comfyserve.notifier.deliveries.service import DeliveryService
from comfyserve.notifier.deliveries.worker import DeliveryWorker
from comfyserve.notifier.settings import Settings
from comfyserve.notifier.telemetry import Metrics

from ..conftest import Receiver, eventually
from ..support import FakeJobs

pytestmark = pytest.mark.integration

TENANT = "tenant-w"
PROCESS = Path(__file__).resolve().parents[1] / "notifier_process.py"


class NoDeadLetters:
    def __init__(self) -> None:
        self.published: list[DeliveryDead] = []

    async def publish(self, event: DeliveryDead) -> None:
        self.published.append(event)


def finished(url: str) -> JobFinished:
    return JobFinished(
        source="workflow/test",
        subject=f"job-{uuid.uuid4().hex[:8]}",
        tenant_id=TENANT,
        data=JobFinishedData(status=FinalStatus.COMPLETED, attempt=1, webhook_url=url),
    )


@pytest.fixture
async def engine(settings: Settings) -> AsyncIterator[AsyncEngine]:
    found = create_engine(settings)
    try:
        await migrate(found, settings)
        yield found
    finally:
        await found.dispose()


def worker(
    engine: AsyncEngine, settings: Settings, name: str, metrics: Metrics | None = None
) -> DeliveryWorker:
    return DeliveryWorker(
        engine,
        settings,
        FakeJobs(),
        HttpSender(timeout_s=5, allow_loopback=True),
        NoDeadLetters(),
        metrics or Metrics(),
        source=name,
    )


def succeeded(metrics: Metrics) -> float:
    return (
        metrics.registry.get_sample_value(
            "notifier_delivery_attempts_total", {"outcome": "succeeded"}
        )
        or 0.0
    )


async def statuses(engine: AsyncEngine) -> Counter[str]:
    async with engine.connect() as conn:
        rows = await conn.execute(text("SELECT status FROM deliveries"))
        return Counter(str(status) for (status,) in rows.all())


async def test_two_instances_share_200_deliveries_and_send_none_twice(
    engine: AsyncEngine, settings: Settings, receiver: Receiver
) -> None:
    deliveries = DeliveryService(engine, settings.schema_name)
    for n in range(200):
        # A target each, so the per-endpoint limit does not serialise them.
        await deliveries.record_event(TENANT, finished(f"{receiver.url}?n={n}"))
    receiver.delay_s = 0.01
    metrics = [Metrics(), Metrics()]
    # Each instance with its own connections, as two processes would have.
    other_engine = create_engine(settings)
    first = worker(engine, settings, "a", metrics[0])
    second = worker(other_engine, settings, "b", metrics[1])
    loops = [asyncio.create_task(first.run()), asyncio.create_task(second.run())]

    async def all_succeeded() -> bool:
        # Counted once the outcome is committed: the last count may follow the
        # row that says so by a moment.
        counted = sum(succeeded(m) for m in metrics)
        return await statuses(engine) == {"succeeded": 200} and counted == 200

    try:
        await eventually(all_succeeded, within_s=120, what="200 deliveries")
    finally:
        for task in loops:
            task.cancel()
        await asyncio.gather(*loops, return_exceptions=True)
        await other_engine.dispose()

    ids = Counter(r.headers["webhook-id"] for r in receiver.received)
    assert len(ids) == 200
    assert max(ids.values()) == 1
    shares = [succeeded(m) for m in metrics]
    assert sum(shares) == 200
    assert min(shares) > 0, f"one instance did all the work: {shares}"


async def test_one_endpoint_never_has_more_in_flight_than_its_limit(
    engine: AsyncEngine, settings: Settings, receiver: Receiver
) -> None:
    limited = settings.model_copy(update={"endpoint_concurrency": 2})
    deliveries = DeliveryService(engine, settings.schema_name)
    for _ in range(8):
        await deliveries.record_event(TENANT, finished(receiver.url))
    receiver.delay_s = 0.3
    loop = worker(engine, limited, "a")

    task = asyncio.create_task(loop.run())
    try:
        await eventually(
            lambda: len(receiver.received) == 8, within_s=60, what="8 deliveries"
        )
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    assert receiver.most_in_flight == 2


class NotifierProcess:
    """`notifier_process.py` as its own OS process, to be killed -9."""

    def __init__(self, settings: Settings, log: Path) -> None:
        self._env = {
            **os.environ,
            "NOTIFIER_DATABASE_URL": settings.database_url,
            "NOTIFIER_SCHEMA": settings.schema_name,
            "NOTIFIER_GRPC_PORT": "0",
            "NOTIFIER_METRICS_PORT": "0",
            "NOTIFIER_KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
            "NOTIFIER_CONSUMER_GROUP": settings.consumer_group,
            "NOTIFIER_FIRST_START_OFFSET": "earliest",
            "NOTIFIER_FINISHED_TOPIC": settings.finished_topic,
            "NOTIFIER_STARTED_TOPIC": settings.started_topic,
            "NOTIFIER_PROGRESS_TOPIC": settings.progress_topic,
            "NOTIFIER_DEAD_TOPIC": settings.dead_topic or "",
            # Enough retries that the delivery outlives the kill.
            "NOTIFIER_RETRY_SCHEDULE_SECONDS": ",".join(["0.3"] * 40),
            "NOTIFIER_RETRY_JITTER": "0",
            "NOTIFIER_IDLE_POLL_SECONDS": "0.5",
            "NOTIFIER_ALLOW_PRIVATE_TARGETS": "true",
            "NOTIFIER_REQUIRE_CREDENTIALS": "false",
        }
        self._log = log
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self._log.open("ab") as log:
            self._process = subprocess.Popen(
                [sys.executable, str(PROCESS)],
                env=self._env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def kill(self) -> None:
        assert self._process is not None
        os.killpg(self._process.pid, signal.SIGKILL)
        self._process.wait()

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            os.killpg(self._process.pid, signal.SIGTERM)
            try:
                self._process.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.mark.slow
async def test_kill_9_mid_retry_loses_nothing_and_duplicates_no_success(
    engine: AsyncEngine, settings: Settings, receiver: Receiver, tmp_path: Path
) -> None:
    receiver.default = 503
    process = NotifierProcess(settings, tmp_path / "notifier.log")
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers)
    await producer.start()
    try:
        process.start()
        retried = finished(receiver.url)
        await producer.send_and_wait(settings.finished_topic, dump_event(retried))
        await eventually(
            lambda: len(receiver.received) >= 2, within_s=120, what="two attempts"
        )
        process.kill()
        # An event while no notifier runs waits in Kafka.
        later = finished(f"{receiver.url}?later")
        await producer.send_and_wait(settings.finished_topic, dump_event(later))
        receiver.default = 200
        process.start()
        await eventually(
            lambda: len(receiver.succeeded()) == 2, within_s=120, what="both events"
        )

        async def settled() -> bool:
            return await statuses(engine) == {"succeeded": 2}

        await eventually(settled, what="both deliveries succeeding")
    finally:
        process.stop()
        await producer.stop()

    by_id = Counter(r.headers["webhook-id"] for r in receiver.succeeded())
    assert sorted(by_id.values()) == [1, 1]
    attempts = [r for r in receiver.received if retried.subject.encode() in r.body]
    assert len(attempts) >= 3
    assert len({r.headers["webhook-id"] for r in attempts}) == 1
