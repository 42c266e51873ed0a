"""Composition root: builds the clients and the gRPC server for one running service."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import structlog

from comfyserve.contracts.pb.storage.v1 import storage_pb2 as pb
from comfyserve.contracts.pb.storage.v1 import storage_pb2_grpc as pb_grpc
from comfyserve.runtime.grpc import serve_grpc
from comfyserve.runtime.identity import caller_verifier
from comfyserve.runtime.kafka import started
from comfyserve.runtime.metrics import serve_metrics
from comfyserve.runtime.tasks import supervised
from comfyserve.storage.adapters.minio_store import MinioObjectStore
from comfyserve.storage.db import create_engine, migrate, session_factory
from comfyserve.storage.fences.handlers import create_broker, subscribe
from comfyserve.storage.fences.service import FenceService
from comfyserve.storage.files.deletion import DeletionService
from comfyserve.storage.files.grpc import StorageServicer
from comfyserve.storage.files.lookups import LookupService
from comfyserve.storage.files.reads import ReadService
from comfyserve.storage.files.retention import RetentionService, sweep_forever
from comfyserve.storage.files.uploads import UploadService
from comfyserve.storage.objects import ObjectStore
from comfyserve.storage.settings import Settings
from comfyserve.storage.telemetry import Metrics

log = structlog.get_logger(__name__)

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["StorageService"].full_name


@dataclass(frozen=True)
class App:
    uploads: UploadService
    reads: ReadService
    deletion: DeletionService
    lookups: LookupService
    retention: RetentionService
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
        uploads = UploadService(sessions, store, settings)
        reads = ReadService(sessions, store, settings)
        deletion = DeletionService(sessions, store)
        lookups = LookupService(sessions, settings)
        retention = RetentionService(sessions, deletion)
        fences = FenceService(sessions, store, deletion, settings)
        metrics = Metrics()
        broker = create_broker(settings)
        subscribe(broker, settings, fences, metrics)
        async with (
            caller_verifier(settings) as verifier,
            serve_grpc(
                service=SERVICE_NAME,
                add_servicers=lambda server: (
                    pb_grpc.add_StorageServiceServicer_to_server(
                        StorageServicer(uploads, reads, deletion, lookups), server
                    )
                ),
                registry=metrics.registry,
                metrics_prefix="storage",
                address=f"[::]:{settings.grpc_port}",
                verifier=verifier,
            ) as server,
            serve_metrics(metrics.registry, settings.metrics_port) as metrics_port,
            started(broker),
            supervised(
                {
                    "retention": lambda: sweep_forever(
                        retention, fences, settings.retention_interval_seconds, metrics
                    )
                }
            ),
        ):
            log.info(
                "storage.started", grpc_port=server.port, metrics_port=metrics_port
            )
            yield App(
                uploads=uploads,
                reads=reads,
                deletion=deletion,
                lookups=lookups,
                retention=retention,
                fences=fences,
                grpc_port=server.port,
                metrics_port=metrics_port,
                metrics=metrics,
            )
    finally:
        await engine.dispose()
