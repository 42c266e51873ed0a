"""The composition root: one small async context manager per resource, composed
in `run_app`, torn down in reverse."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import structlog
from grpc_health.v1 import health_pb2, health_pb2_grpc  # type: ignore[import-untyped]
from grpc_health.v1.health import aio as health_aio  # type: ignore[import-untyped]
from grpc_reflection.v1alpha import reflection  # type: ignore[import-untyped]
from prometheus_client import start_http_server
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from comfyserve.contracts.pb.workflow.v1 import workflow_pb2, workflow_pb2_grpc
from comfyserve.runtime.grpc import create_server, insecure_channel
from comfyserve.runtime.logging import describe_error
from comfyserve.workflow.adapters.files import FileLookup, StorageFileLookup
from comfyserve.workflow.db import JOBS_CHANNEL, QUEUE_CHANNEL, create_engine
from comfyserve.workflow.jobs.cancellation import CancelService
from comfyserve.workflow.jobs.claims import ClaimService
from comfyserve.workflow.jobs.grpc import JobApis, WorkflowServicer
from comfyserve.workflow.jobs.reads import JobReader
from comfyserve.workflow.jobs.submission import SubmissionService
from comfyserve.workflow.jobs.watch import ChannelListener
from comfyserve.workflow.outbox.relay import OutboxRelay, create_producer
from comfyserve.workflow.settings import Settings
from comfyserve.workflow.sweeper.service import Sweeper
from comfyserve.workflow.telemetry import Metrics
from comfyserve.workflow.tracking.consumer import EventConsumer, create_consumer
from comfyserve.workflow.tracking.service import EventTracker
from comfyserve.workflow.workers import repository as workers

log = structlog.get_logger(__name__)

SERVICE_NAME = workflow_pb2.DESCRIPTOR.services_by_name["WorkflowService"].full_name
_RESTART_SECONDS = 1.0
_SHUTDOWN_GRACE_SECONDS = 10.0
_LISTENER_READY_SECONDS = 30.0
_READINESS_SECONDS = 2.0

Clock = Callable[[], datetime]


def system_clock() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class Runtime:
    """What a running service exposes to its runner and to tests."""

    grpc_port: int
    metrics_port: int
    engine: AsyncEngine
    apis: JobApis
    tracker: EventTracker
    sweeper: Sweeper
    relay: OutboxRelay
    metrics: Metrics


async def _supervise(name: str, run: Callable[[], Awaitable[None]]) -> None:
    """Run a background loop for the life of the service, restarting it when
    it fails unexpectedly."""
    while True:
        try:
            await run()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("workflow.task.crashed", task=name)
            await asyncio.sleep(_RESTART_SECONDS)


@asynccontextmanager
async def _database(settings: Settings) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(settings)
    try:
        yield engine
    finally:
        await engine.dispose()


@asynccontextmanager
async def _metrics_server(settings: Settings, metrics: Metrics) -> AsyncIterator[int]:
    server, thread = start_http_server(settings.metrics_port, registry=metrics.registry)
    try:
        yield server.server_port
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@asynccontextmanager
async def _file_lookup(
    settings: Settings, given: FileLookup | None
) -> AsyncIterator[FileLookup]:
    if given is not None:
        yield given
        return
    channel = insecure_channel(settings.storage_grpc_target)
    try:
        yield StorageFileLookup(channel, settings.storage_timeout_seconds)
    finally:
        await channel.close()


@asynccontextmanager
async def _started(client: Any) -> AsyncIterator[Any]:
    """A Kafka producer or consumer, started and stopped."""
    await client.start()
    try:
        yield client
    finally:
        await client.stop()


@asynccontextmanager
async def _background(
    loops: dict[str, Callable[[], Awaitable[None]]],
) -> AsyncIterator[None]:
    tasks = [
        asyncio.create_task(_supervise(name, run), name=f"workflow-{name}")
        for name, run in loops.items()
    ]
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


@asynccontextmanager
async def _grpc_server(
    settings: Settings, apis: JobApis, grpc_host: str
) -> AsyncIterator[tuple[int, Any]]:
    server = create_server()
    workflow_pb2_grpc.add_WorkflowServiceServicer_to_server(
        WorkflowServicer(apis), server
    )
    health = health_aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    reflection.enable_server_reflection(
        (SERVICE_NAME, reflection.SERVICE_NAME, "grpc.health.v1.Health"), server
    )
    port = server.add_insecure_port(f"{grpc_host}:{settings.grpc_port}")
    await server.start()
    # The process serves; the WorkflowService itself only once a job could be
    # accepted (see `_report_readiness`).
    await health.set("", health_pb2.HealthCheckResponse.SERVING)
    await health.set(SERVICE_NAME, health_pb2.HealthCheckResponse.NOT_SERVING)
    try:
        yield port, health
    finally:
        await health.enter_graceful_shutdown()
        # Open WatchJob and AcquireJob calls end here; clients retry elsewhere.
        await server.stop(_SHUTDOWN_GRACE_SECONDS)


async def _report_readiness(engine: AsyncEngine, health: Any) -> None:
    """`WorkflowService` is SERVING while some pool has a node catalog, so a
    submit can be validated and queued; until then a gateway is not ready."""
    serving = None
    while True:
        try:
            async with engine.connect() as conn:
                ready = await workers.any_catalog(conn)
        except (SQLAlchemyError, OSError) as error:
            log.warning("workflow.readiness.check_failed", error=describe_error(error))
            ready = False
        if ready is not serving:
            status = health_pb2.HealthCheckResponse
            await health.set(
                SERVICE_NAME, status.SERVING if ready else status.NOT_SERVING
            )
            log.info("workflow.readiness", serving=ready)
            serving = ready
        await asyncio.sleep(_READINESS_SECONDS)


@asynccontextmanager
async def run_app(
    settings: Settings,
    *,
    files: FileLookup | None = None,
    clock: Clock = system_clock,
    run_sweeper: bool = True,
    grpc_host: str = "[::]",
) -> AsyncIterator[Runtime]:
    """Start the service (migrations already applied) and stop it on exit."""
    source = f"workflow/{socket.gethostname()}"
    metrics = Metrics()
    async with AsyncExitStack() as stack:
        engine = await stack.enter_async_context(_database(settings))
        metrics_port = await stack.enter_async_context(
            _metrics_server(settings, metrics)
        )
        lookup = await stack.enter_async_context(_file_lookup(settings, files))
        producer = await stack.enter_async_context(
            _started(create_producer(settings.kafka_bootstrap_servers))
        )
        consumer = await stack.enter_async_context(
            _started(
                create_consumer(
                    settings.kafka_bootstrap_servers,
                    settings.consumer_group,
                    settings.consumer_offset_reset,
                )
            )
        )
        jobs_listener = ChannelListener(settings.asyncpg_dsn, JOBS_CHANNEL)
        queue_listener = ChannelListener(settings.asyncpg_dsn, QUEUE_CHANNEL)
        reader = JobReader(engine=engine, listener=jobs_listener)
        apis = JobApis(
            submission=SubmissionService(
                engine=engine,
                settings=settings,
                files=lookup,
                reader=reader,
                metrics=metrics,
                source=source,
                clock=clock,
            ),
            reader=reader,
            cancels=CancelService(
                engine=engine,
                reader=reader,
                metrics=metrics,
                source=source,
                clock=clock,
            ),
            claims=ClaimService(
                engine=engine,
                settings=settings,
                queue=queue_listener,
                metrics=metrics,
                source=source,
                clock=clock,
            ),
        )
        tracker = EventTracker(
            engine=engine,
            metrics=metrics,
            max_attempts=settings.max_attempts,
            source=source,
            clock=clock,
            pools=settings.pool_allowlist,
        )
        relay = OutboxRelay(
            engine=engine,
            dsn=settings.asyncpg_dsn,
            producer=producer,
            metrics=metrics,
            poll_seconds=settings.outbox_poll_seconds,
            batch_size=settings.outbox_batch_size,
            clock=clock,
        )
        sweeper = Sweeper(
            engine=engine,
            settings=settings,
            metrics=metrics,
            source=source,
            clock=clock,
        )
        events = EventConsumer(
            consumer=consumer, producer=producer, tracker=tracker, metrics=metrics
        )
        grpc_port, health = await stack.enter_async_context(
            _grpc_server(settings, apis, grpc_host)
        )
        loops: dict[str, Callable[[], Awaitable[None]]] = {
            "jobs-listener": jobs_listener.run,
            "queue-listener": queue_listener.run,
            "relay": relay.run,
            "consumer": events.run,
            "readiness": lambda: _report_readiness(engine, health),
        }
        if run_sweeper:
            loops["sweeper"] = sweeper.run
        await stack.enter_async_context(_background(loops))
        await asyncio.wait_for(
            asyncio.gather(jobs_listener.ready.wait(), queue_listener.ready.wait()),
            _LISTENER_READY_SECONDS,
        )
        log.info("workflow.started", grpc_port=grpc_port)
        yield Runtime(
            grpc_port=grpc_port,
            metrics_port=metrics_port,
            engine=engine,
            apis=apis,
            tracker=tracker,
            sweeper=sweeper,
            relay=relay,
            metrics=metrics,
        )
        log.info("workflow.stopping")
