"""Composition root: builds the clients and the gRPC server for one running service."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Coroutine
from dataclasses import dataclass
from typing import Any

import structlog
from grpc_health.v1 import health_pb2, health_pb2_grpc  # type: ignore[import-untyped]
from grpc_health.v1.health import aio as health_aio  # type: ignore[import-untyped]
from grpc_reflection.v1alpha import reflection  # type: ignore[import-untyped]
from prometheus_client import start_http_server

from comfyserve.contracts.pb.storage.v1 import storage_pb2 as pb
from comfyserve.contracts.pb.storage.v1 import storage_pb2_grpc as pb_grpc
from comfyserve.runtime.grpc import create_server
from comfyserve.storage.adapters.minio_store import MinioObjectStore
from comfyserve.storage.db import create_engine, migrate, session_factory
from comfyserve.storage.fences.handlers import create_broker, subscribe
from comfyserve.storage.fences.service import FenceService
from comfyserve.storage.files.grpc import StorageServicer
from comfyserve.storage.files.retention import sweep_forever
from comfyserve.storage.files.service import FileService
from comfyserve.storage.objects import ObjectStore
from comfyserve.storage.settings import Settings
from comfyserve.storage.telemetry import Metrics

log = structlog.get_logger(__name__)

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["StorageService"].full_name
SHUTDOWN_GRACE_SECONDS = 10.0


@dataclass(frozen=True)
class App:
    files: FileService
    fences: FenceService
    grpc_port: int
    metrics_port: int
    metrics: Metrics


@contextlib.asynccontextmanager
async def running(
    settings: Settings, *, store: ObjectStore | None = None
) -> AsyncIterator[App]:
    """Migrates, then serves gRPC, metrics and retention until the block exits."""
    engine = create_engine(settings)
    try:
        await migrate(engine, settings)
        store = store or MinioObjectStore.from_settings(settings)
        await store.ensure_bucket()
        sessions = session_factory(engine)
        files = FileService(sessions, store, settings)
        fences = FenceService(sessions, store, files, settings)
        metrics = Metrics()
        async with (
            _grpc_server(settings, files, metrics) as grpc_port,
            _metrics_server(settings, metrics) as metrics_port,
            _finished_consumer(settings, fences, metrics),
            _background(
                sweep_forever(
                    files, fences, settings.retention_interval_seconds, metrics
                )
            ),
        ):
            log.info("storage.started", grpc_port=grpc_port, metrics_port=metrics_port)
            yield App(
                files=files,
                fences=fences,
                grpc_port=grpc_port,
                metrics_port=metrics_port,
                metrics=metrics,
            )
    finally:
        await engine.dispose()


@contextlib.asynccontextmanager
async def _grpc_server(
    settings: Settings, files: FileService, metrics: Metrics
) -> AsyncIterator[int]:
    server = create_server()
    pb_grpc.add_StorageServiceServicer_to_server(
        StorageServicer(files, metrics), server
    )
    health = health_aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    reflection.enable_server_reflection(
        [
            SERVICE_NAME,
            health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
            reflection.SERVICE_NAME,
        ],
        server,
    )
    port = server.add_insecure_port(f"[::]:{settings.grpc_port}")
    await server.start()
    for name in ("", SERVICE_NAME):
        await health.set(name, health_pb2.HealthCheckResponse.SERVING)
    try:
        yield port
    finally:
        await health.enter_graceful_shutdown()
        await server.stop(SHUTDOWN_GRACE_SECONDS)


@contextlib.asynccontextmanager
async def _finished_consumer(
    settings: Settings, fences: FenceService, metrics: Metrics
) -> AsyncIterator[None]:
    broker = create_broker(settings)
    subscribe(broker, settings, fences, metrics)
    await broker.start()
    try:
        yield
    finally:
        await broker.stop()


@contextlib.asynccontextmanager
async def _metrics_server(settings: Settings, metrics: Metrics) -> AsyncIterator[int]:
    server, thread = start_http_server(settings.metrics_port, registry=metrics.registry)
    try:
        yield server.server_port
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@contextlib.asynccontextmanager
async def _background(work: Coroutine[Any, Any, None]) -> AsyncIterator[None]:
    task = asyncio.create_task(work)
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
