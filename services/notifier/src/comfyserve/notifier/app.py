"""Composition root: builds the clients, the consumer, the delivery loop and
the gRPC server for one running notifier."""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass

import structlog
from opentelemetry import trace
from opentelemetry.trace import TracerProvider
from sqlalchemy.ext.asyncio import AsyncEngine

from comfyserve.contracts.pb.notifier.v1 import notifier_pb2 as pb
from comfyserve.contracts.pb.notifier.v1 import notifier_pb2_grpc as pb_grpc
from comfyserve.notifier.clock import utcnow
from comfyserve.notifier.db import migrate
from comfyserve.notifier.deliveries.handlers import (
    KafkaDeadLetters,
    create_broker,
    subscribe,
)
from comfyserve.notifier.deliveries.jobs import GrpcJobSource, JobSource
from comfyserve.notifier.deliveries.retention import DeliveryRetention
from comfyserve.notifier.deliveries.sender import HttpSender, WebhookSender
from comfyserve.notifier.deliveries.service import DeliveryService, channel
from comfyserve.notifier.deliveries.worker import DeliveryWorker
from comfyserve.notifier.endpoints.cache import changes_channel
from comfyserve.notifier.endpoints.service import EndpointService
from comfyserve.notifier.grpc import NotifierServicer
from comfyserve.notifier.settings import Settings
from comfyserve.notifier.telemetry import Metrics
from comfyserve.runtime.database import asyncpg_dsn, database_engine
from comfyserve.runtime.grpc import insecure_channel, serve_grpc
from comfyserve.runtime.identity import caller_verifier
from comfyserve.runtime.kafka import started
from comfyserve.runtime.metrics import serve_metrics
from comfyserve.runtime.notifications import listen_forever
from comfyserve.runtime.tasks import supervised

log = structlog.get_logger(__name__)

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["NotifierService"].full_name


@dataclass(frozen=True)
class App:
    engine: AsyncEngine
    endpoints: EndpointService
    deliveries: DeliveryService
    worker: DeliveryWorker
    retention: DeliveryRetention
    grpc_port: int
    metrics_port: int
    metrics: Metrics


@contextlib.asynccontextmanager
async def _job_source(settings: Settings) -> AsyncIterator[JobSource]:
    credential = settings.service_credential
    workflow = insecure_channel(settings.workflow_grpc_target, credential)
    storage = insecure_channel(settings.storage_grpc_target, credential)
    try:
        yield GrpcJobSource(workflow, storage, settings.public_base_url)
    finally:
        await workflow.close()
        await storage.close()


@contextlib.asynccontextmanager
async def running(
    settings: Settings,
    *,
    jobs: JobSource | None = None,
    sender: WebhookSender | None = None,
    tracer_provider: TracerProvider | None = None,
) -> AsyncIterator[App]:
    """Migrates, then consumes events, sends deliveries and serves gRPC and
    metrics until the block exits; its own spans go to `tracer_provider`
    (the global one by default)."""
    tracer = trace.get_tracer("comfyserve.notifier", tracer_provider=tracer_provider)
    async with (
        database_engine(settings.database_url, settings.schema_name) as engine,
        _job_source(settings) as grpc_jobs,
        caller_verifier(settings) as verifier,
    ):
        await migrate(engine, settings)
        metrics = Metrics()
        endpoints = EndpointService(engine, settings)
        deliveries = DeliveryService(engine, settings.schema_name)
        broker = create_broker(settings)
        subscribe(broker, settings, deliveries, metrics, tracer)
        worker = DeliveryWorker(
            engine,
            settings,
            jobs or grpc_jobs,
            sender
            or HttpSender(
                timeout_s=settings.attempt_timeout_seconds,
                allow_loopback=settings.allow_private_targets,
            ),
            KafkaDeadLetters(broker, settings.dead_topic),
            metrics,
            source=f"notifier/{socket.gethostname()}/{os.getpid()}",
            tracer=tracer,
        )
        retention = DeliveryRetention(engine, settings, metrics, utcnow)
        async with (
            serve_grpc(
                service=SERVICE_NAME,
                add_servicers=lambda server: (
                    pb_grpc.add_NotifierServiceServicer_to_server(
                        NotifierServicer(endpoints, deliveries), server
                    )
                ),
                registry=metrics.registry,
                metrics_prefix="notifier",
                address=f"[::]:{settings.grpc_port}",
                verifier=verifier,
            ) as server,
            serve_metrics(metrics.registry, settings.metrics_port) as metrics_port,
            started(broker),
            supervised(
                {
                    "listen": lambda: listen_forever(
                        asyncpg_dsn(settings.database_url),
                        channel(settings.schema_name),
                        worker.wake,
                        on_connect=worker.wake,
                    ),
                    "endpoint_changes": lambda: listen_forever(
                        asyncpg_dsn(settings.database_url),
                        changes_channel(settings.schema_name),
                        deliveries.endpoints.changed,
                        on_connect=deliveries.endpoints.listening,
                        on_lost=deliveries.endpoints.stopped_listening,
                    ),
                    "deliveries": worker.run,
                    "retention": retention.loop(),
                }
            ),
        ):
            log.info(
                "notifier.started", grpc_port=server.port, metrics_port=metrics_port
            )
            yield App(
                engine=engine,
                endpoints=endpoints,
                deliveries=deliveries,
                worker=worker,
                retention=retention,
                grpc_port=server.port,
                metrics_port=metrics_port,
                metrics=metrics,
            )
