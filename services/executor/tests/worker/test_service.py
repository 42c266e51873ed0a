"""Engine supervision, catalog and heartbeats against fakes."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any
from unittest.mock import AsyncMock

import pytest
from prometheus_client import CollectorRegistry

from comfyserve.contracts.events import (
    Event,
    GpuInfo,
    NodeCatalogPublished,
    WorkerHeartbeat,
)
from comfyserve.executor.engine import EngineStartFailed, RestartUnsupported
from comfyserve.executor.telemetry import Metrics
from comfyserve.executor.worker.service import (
    EngineSupervisor,
    Heartbeats,
    WorkerIdentity,
    catalog_hash,
)

IDENTITY = WorkerIdentity(worker_id="w-1", source="executor/w-1", pool="gpu-a")


class Engine:
    def __init__(self) -> None:
        self.started = 0
        self.restarts = 0
        self.answers = True
        self.restart_error: Exception | None = None
        self.info: dict[str, Any] = {"SaveImage": {"input": {}}}

    async def start(self) -> None:
        self.started += 1

    async def restart(self) -> None:
        if self.restart_error is not None:
            raise self.restart_error
        self.restarts += 1

    async def ready(self) -> bool:
        return self.answers

    async def object_info(self) -> dict[str, Any]:
        return self.info

    async def system_stats(self) -> dict[str, Any]:
        return {"system": {"comfyui_version": "0.3.10"}}


class DeliveryFailed(Exception):
    pass


class Publisher:
    """`publish` retries until delivered; `enqueue` sends once, and its
    delivery fails with the next of `failures` while any are left."""

    def __init__(self) -> None:
        self.published: list[Event] = []
        self.enqueued: list[Event] = []
        self.failures: list[Exception] = []

    @property
    def events(self) -> list[Event]:
        return self.published + self.enqueued

    async def publish(self, event: Event) -> None:
        self.published.append(event)

    async def enqueue(self, event: Event) -> Awaitable[object]:
        self.enqueued.append(event)
        delivery: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        if self.failures:
            delivery.set_exception(self.failures.pop(0))
        else:
            delivery.set_result(None)
        return delivery


def supervisor(engine: Engine, crashed: bool = False) -> tuple[Any, Publisher]:
    publisher = Publisher()
    sup = EngineSupervisor(
        engine,  # type: ignore[arg-type]
        publisher,
        IDENTITY,
        Metrics(CollectorRegistry()),
        crashed=lambda: crashed,
    )
    return sup, publisher


def test_catalog_hash_ignores_key_order():
    assert catalog_hash({"a": 1, "b": [1, 2]}) == catalog_hash({"b": [1, 2], "a": 1})
    assert catalog_hash({"a": 1}) != catalog_hash({"a": 2})


async def test_start_publishes_the_catalog_keyed_by_pool():
    engine = Engine()
    sup, publisher = supervisor(engine)

    await sup.start()

    # Published with retries: validation of the pool's jobs depends on it.
    [event] = publisher.published
    assert isinstance(event, NodeCatalogPublished)
    assert event.subject == "gpu-a"
    assert (event.data.pool, event.data.worker_id) == ("gpu-a", "w-1")
    assert event.data.object_info == engine.info
    assert event.data.catalog_hash == catalog_hash(engine.info)
    assert sup.healthy
    assert sup.engine_version == "0.3.10"


async def test_a_watchdog_round_samples_the_gpu_memory_comfyui_reports():
    engine = Engine()
    registry = CollectorRegistry()
    sup = EngineSupervisor(
        engine,  # type: ignore[arg-type]
        Publisher(),
        IDENTITY,
        Metrics(registry),
    )
    engine.system_stats = AsyncMock(  # type: ignore[method-assign]
        return_value={
            "devices": [{"type": "cuda", "index": 0, "vram_total": 8, "vram_free": 3}]
        }
    )

    assert await sup.check(0) == 0

    labels = {"device": "0"}
    assert registry.get_sample_value("executor_gpu_memory_used_bytes", labels) == 5
    assert registry.get_sample_value("executor_gpu_memory_free_bytes", labels) == 3


async def test_a_crashed_engine_is_restarted_and_its_catalog_republished():
    engine = Engine()
    sup, publisher = supervisor(engine, crashed=True)

    assert await sup.check(0) == 0

    assert engine.restarts == 1
    assert [type(e) for e in publisher.published] == [NodeCatalogPublished]


async def test_an_engine_that_stops_answering_is_restarted_after_three_checks():
    engine = Engine()
    engine.answers = False
    sup, _ = supervisor(engine)

    failures = 0
    for _ in range(2):
        failures = await sup.check(failures)
    assert (failures, engine.restarts) == (2, 0)
    assert await sup.check(failures) == 0
    assert engine.restarts == 1


async def test_failed_or_unsupported_restarts_leave_the_worker_unhealthy():
    engine = Engine()
    sup, publisher = supervisor(engine)
    await sup.start()

    engine.restart_error = EngineStartFailed("no port")
    await sup.restart("crashed")
    assert not sup.healthy

    engine.restart_error = RestartUnsupported("remote")
    engine.answers = False
    await sup.restart("crashed")
    assert not sup.healthy
    assert len(publisher.events) == 1


def heartbeats(publisher: Publisher, clock: Any = None) -> Heartbeats:
    gpu = GpuInfo(index=0, name="H100", vram_total=80, vram_free=60)

    async def gpus() -> list[GpuInfo]:
        return [gpu]

    return Heartbeats(
        publisher, IDENTITY, 2.0, lambda: "job-9", lambda: "0.3.10", gpus, clock
    )


async def test_heartbeat_reports_pool_job_gpus_and_engine():
    publisher = Publisher()

    await heartbeats(publisher).beat()

    [event] = publisher.enqueued
    assert isinstance(event, WorkerHeartbeat)
    assert event.subject == "w-1"
    assert event.data.pool == "gpu-a"
    assert event.data.current_job_id == "job-9"
    assert [gpu.name for gpu in event.data.gpus] == ["H100"]
    assert (event.data.engine_version, event.data.interval_s) == ("0.3.10", 2.0)


async def test_a_heartbeat_is_sent_once_never_retried():
    publisher = Publisher()
    publisher.failures = [DeliveryFailed("broker gone")]

    with pytest.raises(DeliveryFailed):
        await heartbeats(publisher).beat()

    assert len(publisher.enqueued) == 1
    assert publisher.published == []


class Stop(Exception):
    pass


class CountingClock:
    """Lets the heartbeat loop sleep `rounds` times, then stops it."""

    def __init__(self, rounds: int) -> None:
        self.rounds = rounds
        self.sleeps: list[float] = []

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        if len(self.sleeps) == self.rounds:
            raise Stop


async def test_the_heartbeat_loop_outlives_a_missed_beat():
    publisher = Publisher()
    publisher.failures = [DeliveryFailed("broker gone")]
    clock = CountingClock(rounds=2)

    with pytest.raises(Stop):
        await heartbeats(publisher, clock).run()

    assert len(publisher.enqueued) == 2
    assert clock.sleeps == [2.0, 2.0]


async def test_a_restart_for_an_engine_already_replaced_is_not_done_again():
    engine = Engine()
    sup, _ = supervisor(engine)
    await sup.start()
    seen = sup.restart_count

    # Both jobs of a prefetching worker failed on the same engine.
    await asyncio.gather(
        sup.restart("ComfyUI exited", since=seen),
        sup.restart("ComfyUI exited", since=seen),
    )
    assert engine.restarts == 1

    await sup.restart("ComfyUI exited", since=sup.restart_count)
    await sup.restart("ComfyUI stopped answering")
    assert engine.restarts == 3
