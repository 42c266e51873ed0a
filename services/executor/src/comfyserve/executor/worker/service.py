"""The worker around its engine: node catalog, restarts, watchdog, heartbeats."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import structlog

from comfyserve.contracts.events import (
    GpuInfo,
    NodeCatalogData,
    NodeCatalogPublished,
    WorkerHeartbeat,
    WorkerHeartbeatData,
)
from comfyserve.executor.engine import Engine, EngineError, RestartUnsupported
from comfyserve.executor.jobs.ports import Clock, Publisher
from comfyserve.executor.telemetry import Metrics

log = structlog.get_logger(__name__)

# Consecutive failed readiness checks before an idle engine counts as hung.
_HUNG_AFTER_CHECKS = 3


def catalog_hash(object_info: dict[str, Any]) -> str:
    canonical = json.dumps(object_info, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def engine_version_of(system_stats: dict[str, Any]) -> str | None:
    system = system_stats.get("system")
    if isinstance(system, dict):
        version = system.get("comfyui_version")
        if isinstance(version, str) and version:
            return version
    return None


@dataclass(frozen=True, slots=True)
class WorkerIdentity:
    worker_id: str
    source: str
    pool: str


class EngineSupervisor:
    """Owns the engine's life: start, restarts (one at a time) and the catalog.

    `crashed` reports a managed ComfyUI that exited on its own; a remote one
    never reports it and cannot be restarted, only waited for.
    """

    def __init__(
        self,
        engine: Engine,
        publisher: Publisher,
        identity: WorkerIdentity,
        metrics: Metrics,
        *,
        crashed: Callable[[], bool] = lambda: False,
    ) -> None:
        self._engine = engine
        self._publisher = publisher
        self._identity = identity
        self._metrics = metrics
        self._crashed = crashed
        self._lock = asyncio.Lock()
        self._restarts = 0
        self._healthy = False
        self.engine_version: str | None = None

    @property
    def healthy(self) -> bool:
        return self._healthy

    async def start(self) -> None:
        await self._engine.start()
        self._healthy = True
        await self.publish_catalog()

    async def publish_catalog(self) -> None:
        object_info = await self._engine.object_info()
        try:
            stats = await self._engine.system_stats()
        except EngineError as exc:
            log.warning("executor.engine.stats_failed", error=str(exc))
        else:
            self.engine_version = engine_version_of(stats)
            self._metrics.gpu_memory(stats)
        digest = catalog_hash(object_info)
        await self._publisher.publish(
            NodeCatalogPublished(
                source=self._identity.source,
                subject=self._identity.pool,
                data=NodeCatalogData(
                    worker_id=self._identity.worker_id,
                    pool=self._identity.pool,
                    catalog_hash=digest,
                    object_info=object_info,
                ),
            )
        )
        log.info("executor.catalog.published", nodes=len(object_info), hash=digest)

    @property
    def restart_count(self) -> int:
        return self._restarts

    async def restart(self, reason: str, *, since: int | None = None) -> None:
        async with self._lock:
            if since is not None and since != self._restarts:
                # Both jobs of a prefetching worker see one crash: the engine
                # that failed them was replaced already.
                log.info("executor.engine.restarted_already", reason=reason)
                return
            log.warning("executor.engine.restarting", reason=reason)
            try:
                await self._engine.restart()
            except RestartUnsupported:
                log.warning("executor.engine.restart_unsupported", reason=reason)
                self._healthy = await self._engine.ready()
                return
            except EngineError as exc:
                self._healthy = False
                log.error("executor.engine.restart_failed", error=str(exc))
                return
            self._metrics.engine_restarts.labels(_reason_label(reason)).inc()
            self._restarts += 1
            self._healthy = True
            try:
                await self.publish_catalog()
            except EngineError as exc:
                log.error("executor.catalog.failed", error=str(exc))

    async def check(self, failures: int) -> int:
        """One watchdog round; returns the count of consecutive failed checks."""
        if self._crashed():
            await self.restart("ComfyUI exited")
            return 0
        if await self._engine.ready():
            if not self._healthy:
                log.info("executor.engine.recovered")
            self._healthy = True
            await self._sample_gpu_memory()
            return 0
        failures += 1
        log.warning("executor.engine.not_ready", checks=failures)
        if failures >= _HUNG_AFTER_CHECKS:
            self._healthy = False
            await self.restart("ComfyUI stopped answering")
            return 0
        return failures

    async def _sample_gpu_memory(self) -> None:
        try:
            self._metrics.gpu_memory(await self._engine.system_stats())
        except EngineError as exc:
            log.debug("executor.engine.stats_failed", error=str(exc))

    async def watch(
        self, busy: Callable[[], bool], interval_s: float, clock: Clock
    ) -> None:
        """Checks the engine every `interval_s` while no job runs; the job path
        handles an engine that fails under a job itself."""
        failures = 0
        while True:
            await clock.sleep(interval_s)
            if busy():
                failures = 0
                continue
            failures = await self.check(failures)


def _reason_label(reason: str) -> str:
    # A bounded label set: the free text stays in the log.
    lowered = reason.lower()
    if "interrupt" in lowered:
        return "hung_prompt"
    if "answering" in lowered:
        return "unresponsive"
    return "crashed"


class Heartbeats:
    def __init__(
        self,
        publisher: Publisher,
        identity: WorkerIdentity,
        interval_s: float,
        current_job: Callable[[], str | None],
        engine_version: Callable[[], str | None],
        gpus: Callable[[], Awaitable[list[GpuInfo]]],
        clock: Clock,
    ) -> None:
        self._publisher = publisher
        self._identity = identity
        self._interval_s = interval_s
        self._current_job = current_job
        self._engine_version = engine_version
        self._gpus = gpus
        self._clock = clock

    async def beat(self) -> None:
        # Sent once, never retried: a late heartbeat is worth nothing, and the
        # next one follows within the interval.
        delivery = await self._publisher.enqueue(
            WorkerHeartbeat(
                source=self._identity.source,
                subject=self._identity.worker_id,
                data=WorkerHeartbeatData(
                    worker_id=self._identity.worker_id,
                    pool=self._identity.pool,
                    current_job_id=self._current_job(),
                    gpus=await self._gpus(),
                    engine_version=self._engine_version(),
                    interval_s=self._interval_s,
                ),
            )
        )
        await delivery

    async def run(self) -> None:
        while True:
            try:
                await self.beat()
            except Exception as exc:
                # A missed beat is survivable; a dead heartbeat loop is not.
                log.warning("executor.heartbeat.failed", error=repr(exc))
            await self._clock.sleep(self._interval_s)
