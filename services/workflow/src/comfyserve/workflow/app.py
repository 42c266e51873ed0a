"""The composition root: builds every client and task of the service in one
lifespan, and tears them down in reverse."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import grpc
import structlog
from grpc_health.v1 import health_pb2, health_pb2_grpc  # type: ignore[import-untyped]
from grpc_health.v1.health import aio as health_aio  # type: ignore[import-untyped]
from grpc_reflection.v1alpha import reflection  # type: ignore[import-untyped]
from prometheus_client import start_http_server

from comfyserve.contracts.pb.workflow.v1 import workflow_pb2, workflow_pb2_grpc
from comfyserve.workflow.adapters.files import FileLookup, StorageFileLookup
from comfyserve.workflow.db import create_engine
from comfyserve.workflow.jobs.grpc import WorkflowServicer
from comfyserve.workflow.jobs.service import JobService
from comfyserve.workflow.jobs.watch import JobChangeListener
from comfyserve.workflow.outbox.relay import OutboxRelay, create_producer
from comfyserve.workflow.settings import Settings
from comfyserve.workflow.sweeper.service import Sweeper
from comfyserve.workflow.telemetry import Metrics
from comfyserve.workflow.tracking.consumer import EventConsumer, create_consumer
from comfyserve.workflow.tracking.service import EventTracker

log = structlog.get_logger(__name__)

SERVICE_NAME = workflow_pb2.DESCRIPTOR.services_by_name["WorkflowService"].full_name
_RESTART_SECONDS = 1.0
_SHUTDOWN_GRACE_SECONDS = 10.0
_LISTENER_READY_SECONDS = 30.0


def system_clock() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class Runtime:
    """What a running service exposes to its runner and to tests."""

    grpc_port: int
    metrics_port: int
    jobs: JobService
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
async def run_app(
    settings: Settings,
    *,
    files: FileLookup | None = None,
    clock: Callable[[], datetime] = system_clock,
    run_sweeper: bool = True,
    grpc_host: str = "[::]",
) -> AsyncIterator[Runtime]:
    """Start the service (migrations already applied) and stop it on exit."""
    source = f"workflow/{socket.gethostname()}"
    async with AsyncExitStack() as stack:
        engine = create_engine(settings)
        stack.push_async_callback(engine.dispose)

        metrics = Metrics()
        metrics_server, metrics_thread = start_http_server(
            settings.metrics_port, registry=metrics.registry
        )
        stack.callback(metrics_server.server_close)
        stack.callback(metrics_thread.join, 5)
        stack.callback(metrics_server.shutdown)

        if files is None:
            channel = grpc.aio.insecure_channel(settings.storage_grpc_target)
            stack.push_async_callback(channel.close)
            files = StorageFileLookup(channel, settings.storage_timeout_seconds)

        producer = create_producer(settings.kafka_bootstrap_servers)
        await producer.start()
        stack.push_async_callback(producer.stop)
        consumer = create_consumer(
            settings.kafka_bootstrap_servers,
            settings.consumer_group,
            settings.consumer_offset_reset,
        )
        await consumer.start()
        stack.push_async_callback(consumer.stop)

        listener = JobChangeListener(settings.asyncpg_dsn)
        jobs = JobService(
            engine=engine,
            settings=settings,
            files=files,
            listener=listener,
            metrics=metrics,
            source=source,
            clock=clock,
        )
        tracker = EventTracker(
            engine=engine,
            metrics=metrics,
            max_attempts=settings.max_attempts,
            source=source,
            clock=clock,
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

        loops: dict[str, Callable[[], Awaitable[None]]] = {
            "listener": listener.run,
            "relay": relay.run,
            "consumer": events.run,
        }
        if run_sweeper:
            loops["sweeper"] = sweeper.run
        tasks = [
            asyncio.create_task(_supervise(name, run), name=f"workflow-{name}")
            for name, run in loops.items()
        ]
        stack.push_async_callback(_cancel, tasks)
        await asyncio.wait_for(listener.ready.wait(), _LISTENER_READY_SECONDS)

        server = grpc.aio.server()
        workflow_pb2_grpc.add_WorkflowServiceServicer_to_server(
            WorkflowServicer(jobs), server
        )
        health = health_aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(health, server)
        reflection.enable_server_reflection(
            (SERVICE_NAME, reflection.SERVICE_NAME, "grpc.health.v1.Health"), server
        )
        grpc_port = server.add_insecure_port(f"{grpc_host}:{settings.grpc_port}")
        await server.start()
        stack.push_async_callback(_stop_server, server, health)
        await health.set(SERVICE_NAME, health_pb2.HealthCheckResponse.SERVING)
        await health.set("", health_pb2.HealthCheckResponse.SERVING)
        log.info("workflow.started", grpc_port=grpc_port)

        yield Runtime(
            grpc_port=grpc_port,
            metrics_port=metrics_server.server_port,
            jobs=jobs,
            tracker=tracker,
            sweeper=sweeper,
            relay=relay,
            metrics=metrics,
        )
        log.info("workflow.stopping")


async def _stop_server(server: grpc.aio.Server, health: Any) -> None:
    await health.enter_graceful_shutdown()
    # Open WatchJob streams end here; clients reconnect to another instance.
    await server.stop(_SHUTDOWN_GRACE_SECONDS)


async def _cancel(tasks: list[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
