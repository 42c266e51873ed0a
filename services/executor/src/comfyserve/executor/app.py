"""The composition root: one small async context manager per resource, composed
in `ExecutorApp.run`, torn down in reverse."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager

import grpc
import httpx
import structlog
from aiohttp import web
from prometheus_client import CollectorRegistry

from comfyserve.contracts.events import GpuInfo
from comfyserve.contracts.topics import CANCEL_REQUESTED
from comfyserve.executor.adapters.clock import SystemClock
from comfyserve.executor.adapters.gpus import cuda_available, gpu_infos
from comfyserve.executor.adapters.kafka import BroadcastConsumer, KafkaPublisher
from comfyserve.executor.adapters.storage import GrpcFileStore
from comfyserve.executor.adapters.workflow import GrpcDispatch
from comfyserve.executor.engine import Engine, ManagedComfyUI, RemoteComfyUI
from comfyserve.executor.health import create_http_app
from comfyserve.executor.jobs.dispatch import DispatchLoop, LeaseKeeper, follow_cancels
from comfyserve.executor.jobs.runner import JobRunner
from comfyserve.executor.settings import Settings
from comfyserve.executor.telemetry import Metrics
from comfyserve.executor.worker.service import (
    EngineSupervisor,
    Heartbeats,
    WorkerIdentity,
)
from comfyserve.runtime.entrypoint import freeze_startup_heap
from comfyserve.runtime.grpc import insecure_channel
from comfyserve.runtime.kafka import started

log = structlog.get_logger(__name__)

_ENGINE_WAIT_S = 1.0
_PREVIEW_ARGS = ("--preview-method", "auto")


def build_engine(settings: Settings, cpu: bool) -> tuple[Engine, Callable[[], bool]]:
    """The engine and how to tell that it crashed (only a managed one can)."""
    if settings.comfyui_path is not None:
        managed = ManagedComfyUI(
            settings.comfyui_path,
            settings.comfyui_python,
            settings.scratch / "comfyui",
            cpu=cpu,
            # ComfyUI renders no sampler previews unless told how.
            extra_args=_PREVIEW_ARGS if settings.preview_interval_seconds > 0 else (),
        )
        return managed, lambda: managed.crashed
    if settings.comfyui_url is None:
        raise ValueError("no ComfyUI configured")
    return RemoteComfyUI(settings.comfyui_url), lambda: False


async def _no_gpus() -> list[GpuInfo]:
    return []


async def _cuda_gpus() -> list[GpuInfo]:
    return await asyncio.to_thread(gpu_infos)


@asynccontextmanager
async def _channel(
    target: str, credential: str | None
) -> AsyncIterator[grpc.aio.Channel]:
    channel = insecure_channel(target, credential)
    try:
        yield channel
    finally:
        await channel.close()


@asynccontextmanager
async def _http_client(timeout_s: float) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=timeout_s) as client:
        yield client


@asynccontextmanager
async def _engine(
    engine: Engine, supervisor: EngineSupervisor
) -> AsyncIterator[EngineSupervisor]:
    try:
        # The catalog goes out before any job is taken, so validation of jobs
        # for this pool's nodes works as soon as the worker takes one.
        await supervisor.start()
        yield supervisor
    finally:
        await engine.stop()


@asynccontextmanager
async def _http_server(
    registry: CollectorRegistry, host: str, port: int, ready: Callable[[], bool]
) -> AsyncIterator[int | None]:
    runner = web.AppRunner(create_http_app(registry, ready), handle_signals=False)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        addresses = runner.addresses
        yield int(addresses[0][1]) if addresses else None
    finally:
        await runner.cleanup()


class ExecutorApp:
    """One worker: `run` serves until `stop` is set, then shuts down cleanly."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.registry = CollectorRegistry()
        self.metrics = Metrics(self.registry)
        self.clock = SystemClock()
        self.identity = WorkerIdentity(
            worker_id=settings.worker_id,
            source=f"executor/{settings.worker_id}",
            pool=settings.pool,
        )
        # Set once the worker takes jobs; tests and probes wait on it.
        self.consuming = asyncio.Event()
        self.http_port: int | None = None

    async def run(self, stop: asyncio.Event) -> None:
        settings = self.settings
        has_cuda = await asyncio.to_thread(cuda_available)
        cpu = settings.cpu if settings.cpu is not None else not has_cuda
        log.info(
            "executor.starting",
            worker_id=settings.worker_id,
            pool=settings.pool,
            engine=settings.engine_mode.value,
            cpu=cpu,
        )
        async with AsyncExitStack() as stack:
            publisher = await stack.enter_async_context(
                started(
                    KafkaPublisher(
                        settings.kafka_bootstrap_servers, self.identity.worker_id
                    )
                )
            )
            engine, crashed = build_engine(settings, cpu)
            supervisor = await stack.enter_async_context(
                _engine(
                    engine,
                    EngineSupervisor(
                        engine, publisher, self.identity, self.metrics, crashed=crashed
                    ),
                )
            )
            workflow = await stack.enter_async_context(
                _channel(settings.workflow_grpc_target, settings.service_credential)
            )
            storage = await stack.enter_async_context(
                _channel(settings.storage_grpc_target, settings.service_credential)
            )
            http = await stack.enter_async_context(
                _http_client(settings.transfer_timeout_seconds)
            )
            cancels = await stack.enter_async_context(
                started(
                    BroadcastConsumer(
                        settings.kafka_bootstrap_servers,
                        f"{self.identity.worker_id}-cancel",
                        CANCEL_REQUESTED,
                    )
                )
            )
            runner = JobRunner(
                engine=engine,
                files=GrpcFileStore(storage, http, settings.grpc_timeout_seconds),
                publisher=publisher,
                keeper=supervisor,
                clock=self.clock,
                worker_id=self.identity.worker_id,
                source=self.identity.source,
                progress_interval_s=settings.progress_interval_seconds,
                preview_interval_s=settings.preview_interval_seconds,
                interrupt_grace_s=settings.interrupt_grace_seconds,
                local_roots=lambda: engine.local_roots,
                metrics=self.metrics,
            )
            dispatch = GrpcDispatch(workflow, settings.grpc_timeout_seconds)
            leases = LeaseKeeper(dispatch, runner, self.identity.worker_id, self.clock)

            async def engine_ready() -> None:
                while not supervisor.healthy:
                    await self.clock.sleep(_ENGINE_WAIT_S)

            loop = DispatchLoop(
                dispatch=dispatch,
                runner=runner,
                leases=leases,
                metrics=self.metrics,
                engine_ready=engine_ready,
                worker_id=self.identity.worker_id,
                pool=settings.pool,
                wait_s=settings.acquire_wait_seconds,
                prefetch=settings.prefetch,
            )
            self.http_port = await stack.enter_async_context(
                _http_server(
                    self.registry,
                    settings.http_host,
                    settings.http_port,
                    lambda: supervisor.healthy,
                )
            )
            log.info("executor.http.listening", port=self.http_port)
            freeze_startup_heap()
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
                asyncio.create_task(leases.run(), name="leases"),
                asyncio.create_task(
                    supervisor.watch(
                        lambda: runner.busy,
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
            # Its lease lapses, so the job is re-queued for another worker.
            log.warning("executor.job.abandoned_on_shutdown", grace_s=grace)
            jobs.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await jobs
