"""The composition root: builds every client, runs the worker, tears it down."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from contextlib import AsyncExitStack

import grpc
import httpx
import structlog
from aiohttp import web
from prometheus_client import CollectorRegistry

from comfyserve.contracts.events import GpuInfo
from comfyserve.contracts.topics import CANCEL_REQUESTED
from comfyserve.executor.adapters.clock import SystemClock
from comfyserve.executor.adapters.gpus import cuda_available, gpu_infos
from comfyserve.executor.adapters.kafka import (
    BroadcastConsumer,
    KafkaPublisher,
    SubmittedConsumer,
)
from comfyserve.executor.adapters.storage import GrpcFileStore
from comfyserve.executor.adapters.workflow import GrpcClaims
from comfyserve.executor.engine import Engine, ManagedComfyUI, RemoteComfyUI
from comfyserve.executor.health import create_http_app
from comfyserve.executor.jobs.handlers import SubmittedLoop, follow_cancels
from comfyserve.executor.jobs.service import JobRunner, RunnerConfig
from comfyserve.executor.settings import Settings
from comfyserve.executor.telemetry import Metrics
from comfyserve.executor.worker.service import (
    EngineSupervisor,
    Heartbeats,
    WorkerIdentity,
)

log = structlog.get_logger(__name__)

_ENGINE_WAIT_S = 1.0


def build_engine(settings: Settings, cpu: bool) -> tuple[Engine, Callable[[], bool]]:
    """The engine and how to tell that it crashed (only a managed one can)."""
    if settings.comfyui_path is not None:
        managed = ManagedComfyUI(
            settings.comfyui_path,
            settings.comfyui_python,
            settings.scratch_dir / "comfyui",
            cpu=cpu,
        )
        return managed, lambda: managed.crashed
    if settings.comfyui_url is None:
        raise ValueError("no ComfyUI configured")
    return RemoteComfyUI(settings.comfyui_url), lambda: False


async def _no_gpus() -> list[GpuInfo]:
    return []


async def _cuda_gpus() -> list[GpuInfo]:
    return await asyncio.to_thread(gpu_infos)


class ExecutorApp:
    """One worker: `run` serves until `stop` is set, then shuts down cleanly."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.registry = CollectorRegistry()
        self.metrics = Metrics(self.registry)
        self.clock = SystemClock()
        self.identity = WorkerIdentity(
            worker_id=settings.worker_id, source=f"executor/{settings.worker_id}"
        )
        # Set once the worker reads its topics; tests and probes wait on it.
        self.consuming = asyncio.Event()
        self.http_port: int | None = None

    async def run(self, stop: asyncio.Event) -> None:
        settings = self.settings
        has_cuda = await asyncio.to_thread(cuda_available)
        cpu = settings.cpu if settings.cpu is not None else not has_cuda
        log.info(
            "executor.starting",
            worker_id=settings.worker_id,
            engine=settings.engine_mode.value,
            cpu=cpu,
        )
        async with AsyncExitStack() as stack:
            publisher = KafkaPublisher(
                settings.kafka_bootstrap_servers, self.identity.worker_id
            )
            await publisher.start()
            stack.push_async_callback(publisher.stop)

            engine, crashed = build_engine(settings, cpu)
            supervisor = EngineSupervisor(
                engine, publisher, self.identity, self.metrics, crashed=crashed
            )
            stack.push_async_callback(engine.stop)
            # The catalog goes out before the group join, so validation of jobs
            # for this worker's nodes works as soon as it takes any.
            await supervisor.start()

            workflow_channel = grpc.aio.insecure_channel(settings.workflow_grpc_target)
            stack.push_async_callback(workflow_channel.close)
            storage_channel = grpc.aio.insecure_channel(settings.storage_grpc_target)
            stack.push_async_callback(storage_channel.close)
            http = httpx.AsyncClient(timeout=settings.transfer_timeout_seconds)
            stack.push_async_callback(http.aclose)

            runner = JobRunner(
                engine=engine,
                claims=GrpcClaims(workflow_channel, settings.grpc_timeout_seconds),
                files=GrpcFileStore(
                    storage_channel, http, settings.grpc_timeout_seconds
                ),
                publisher=publisher,
                keeper=supervisor,
                clock=self.clock,
                config=RunnerConfig(
                    worker_id=self.identity.worker_id,
                    source=self.identity.source,
                    progress_interval_s=settings.progress_interval_seconds,
                    interrupt_grace_s=settings.interrupt_grace_seconds,
                ),
            )

            cancels = BroadcastConsumer(
                settings.kafka_bootstrap_servers,
                f"{self.identity.worker_id}-cancel",
                CANCEL_REQUESTED,
            )
            await cancels.start()
            stack.push_async_callback(cancels.stop)

            async def engine_ready() -> None:
                while not supervisor.healthy:
                    await self.clock.sleep(_ENGINE_WAIT_S)

            loop: SubmittedLoop | None = None

            async def on_revoked(partitions: set[tuple[str, int]]) -> None:
                if loop is not None:
                    await loop.on_revoked(partitions)

            consumer = SubmittedConsumer(
                settings.kafka_bootstrap_servers,
                settings.consumer_group,
                self.identity.worker_id,
                settings.max_poll_interval_ms,
                on_revoked,
            )
            loop = SubmittedLoop(
                consumer, runner, publisher, self.metrics, engine_ready
            )
            await consumer.start()
            stack.push_async_callback(consumer.stop)

            await self._serve_http(
                stack, lambda: supervisor.healthy and consumer.started
            )
            heartbeats = Heartbeats(
                publisher,
                self.identity,
                settings.heartbeat_interval_seconds,
                lambda: runner.current_job_id,
                lambda: supervisor.engine_version,
                _cuda_gpus if has_cuda else _no_gpus,
                self.clock,
            )
            background = [
                asyncio.create_task(heartbeats.run(), name="heartbeats"),
                asyncio.create_task(
                    supervisor.watch(
                        lambda: runner.current_job_id is not None,
                        settings.watchdog_interval_seconds,
                        self.clock,
                    ),
                    name="watchdog",
                ),
                asyncio.create_task(
                    follow_cancels(cancels.messages(), runner), name="cancels"
                ),
            ]
            jobs = asyncio.create_task(loop.run(), name="jobs")
            self.consuming.set()
            log.info("executor.ready", worker_id=self.identity.worker_id)
            try:
                await self._until_stopped(stop, jobs, background)
                loop.stop_taking()
                await self._finish_current_job(jobs)
            finally:
                for task in [jobs, *background]:
                    task.cancel()
                await asyncio.gather(jobs, *background, return_exceptions=True)
                log.info("executor.stopping", worker_id=self.identity.worker_id)

    async def _until_stopped(
        self,
        stop: asyncio.Event,
        jobs: asyncio.Task[None],
        background: list[asyncio.Task[None]],
    ) -> None:
        stopped = asyncio.create_task(stop.wait())
        try:
            await asyncio.wait(
                {stopped, jobs, *background}, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            stopped.cancel()
        for task in (jobs, *background):
            if task.done() and not task.cancelled() and task.exception() is not None:
                # A dead job loop or listener must stop the worker, not idle it.
                log.error(
                    "executor.task_failed",
                    task=task.get_name(),
                    error=repr(task.exception()),
                )
                raise RuntimeError(f"{task.get_name()} failed") from task.exception()

    async def _finish_current_job(self, jobs: asyncio.Task[None]) -> None:
        grace = self.settings.interrupt_grace_seconds
        done, _ = await asyncio.wait({jobs}, timeout=grace)
        if not done:
            # Its offset stays uncommitted, so the job is delivered again.
            log.warning("executor.job.abandoned_on_shutdown", grace_s=grace)
            jobs.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await jobs

    async def _serve_http(
        self, stack: AsyncExitStack, ready: Callable[[], bool]
    ) -> None:
        runner = web.AppRunner(
            create_http_app(self.registry, ready), handle_signals=False
        )
        await runner.setup()
        stack.push_async_callback(runner.cleanup)
        site = web.TCPSite(runner, self.settings.http_host, self.settings.http_port)
        await site.start()
        addresses = runner.addresses
        self.http_port = int(addresses[0][1]) if addresses else None
        log.info("executor.http.listening", port=self.http_port)
