"""The composition root: one small async context manager per resource, composed
in `run_app`, torn down in reverse."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime

import structlog
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from comfyserve.contracts.pb.workflow.v1 import workflow_pb2, workflow_pb2_grpc
from comfyserve.runtime.database import autocommit, database_engine
from comfyserve.runtime.grpc import GrpcServer, insecure_channel, serve_grpc
from comfyserve.runtime.identity import caller_verifier
from comfyserve.runtime.kafka import started
from comfyserve.runtime.logging import describe_error
from comfyserve.runtime.metrics import serve_metrics
from comfyserve.runtime.redis import redis_client
from comfyserve.runtime.tasks import supervised
from comfyserve.workflow.adapters.files import FileLookup, StorageFileLookup
from comfyserve.workflow.adapters.partner_keys import RedisPartnerKeys
from comfyserve.workflow.db import JOBS_CHANNEL, QUEUE_CHANNEL
from comfyserve.workflow.ingress import handlers as ingress_handlers
from comfyserve.workflow.ingress.service import IngressService
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
from comfyserve.workflow.tenants.service import TenantService, quota_defaults
from comfyserve.workflow.tracking.consumer import EventConsumer, create_consumer
from comfyserve.workflow.tracking.service import EventTracker
from comfyserve.workflow.workers import repository as workers

log = structlog.get_logger(__name__)

SERVICE_NAME = workflow_pb2.DESCRIPTOR.services_by_name["WorkflowService"].full_name
_RESTART_SECONDS = 1.0
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


@asynccontextmanager
async def _file_lookup(
    settings: Settings, given: FileLookup | None
) -> AsyncIterator[FileLookup]:
    if given is not None:
        yield given
        return
    channel = insecure_channel(
        settings.storage_grpc_target, settings.service_credential
    )
    try:
        yield StorageFileLookup(channel, settings.storage_timeout_seconds)
    finally:
        await channel.close()


async def _report_readiness(engine: AsyncEngine, server: GrpcServer) -> None:
    """`WorkflowService` is SERVING while some pool has a node catalog, so a
    submit can be validated and queued; until then a gateway is not ready."""
    serving = None
    while True:
        try:
            async with autocommit(engine) as conn:
                ready = await workers.any_catalog(conn)
        except (SQLAlchemyError, OSError) as error:
            log.warning("workflow.readiness.check_failed", error=describe_error(error))
            ready = False
        if ready is not serving:
            await server.set_serving(SERVICE_NAME, ready)
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
        engine = await stack.enter_async_context(
            database_engine(settings.database_url, settings.schema_)
        )
        metrics_port = await stack.enter_async_context(
            serve_metrics(metrics.registry, settings.metrics_port)
        )
        lookup = await stack.enter_async_context(_file_lookup(settings, files))
        redis = await stack.enter_async_context(
            redis_client(settings.redis_url, settings.redis_timeout_seconds)
        )
        partner_keys = RedisPartnerKeys(redis, settings.schema_)
        producer = await stack.enter_async_context(
            started(create_producer(settings.kafka_bootstrap_servers))
        )
        consumer = await stack.enter_async_context(
            started(
                create_consumer(
                    settings.kafka_bootstrap_servers,
                    settings.consumer_group,
                    settings.consumer_offset_reset,
                )
            )
        )
        verifier = await stack.enter_async_context(caller_verifier(settings))
        jobs_listener = ChannelListener(settings.asyncpg_dsn, JOBS_CHANNEL)
        queue_listener = ChannelListener(
            settings.asyncpg_dsn, QUEUE_CHANNEL, wake_one=True
        )
        reader = JobReader(engine=engine, listener=jobs_listener)
        tenants = TenantService(engine, quota_defaults(settings), clock)
        apis = JobApis(
            submission=SubmissionService(
                engine=engine,
                settings=settings,
                files=lookup,
                partner_keys=partner_keys,
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
                partner_keys=partner_keys,
                metrics=metrics,
                source=source,
                clock=clock,
            ),
            tenants=tenants,
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
            partner_keys=partner_keys,
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
        ingress = ingress_handlers.create_broker(settings)
        ingress_handlers.subscribe(
            ingress,
            settings,
            IngressService(
                submissions=apis.submission, verifier=verifier, source=source
            ),
            metrics,
        )
        server = await stack.enter_async_context(
            serve_grpc(
                service=SERVICE_NAME,
                add_servicers=lambda grpc_server: (
                    workflow_pb2_grpc.add_WorkflowServiceServicer_to_server(
                        WorkflowServicer(apis), grpc_server
                    )
                ),
                registry=metrics.registry,
                metrics_prefix="workflow",
                address=f"{grpc_host}:{settings.grpc_port}",
                # Only once a job could be accepted (see `_report_readiness`).
                serving=False,
                verifier=verifier,
            )
        )
        loops: dict[str, Callable[[], Awaitable[None]]] = {
            "jobs-listener": jobs_listener.run,
            "queue-listener": queue_listener.run,
            "relay": relay.run,
            "consumer": events.run,
            "readiness": lambda: _report_readiness(engine, server),
        }
        if run_sweeper:
            loops["sweeper"] = sweeper.loop()
        await stack.enter_async_context(supervised(loops))
        await stack.enter_async_context(started(ingress))
        await asyncio.wait_for(
            asyncio.gather(jobs_listener.ready.wait(), queue_listener.ready.wait()),
            _LISTENER_READY_SECONDS,
        )
        log.info("workflow.started", grpc_port=server.port)
        yield Runtime(
            grpc_port=server.port,
            metrics_port=metrics_port,
            engine=engine,
            apis=apis,
            tracker=tracker,
            sweeper=sweeper,
            relay=relay,
            metrics=metrics,
        )
        log.info("workflow.stopping")
