"""Fixtures for the workflow service's integration tests: one migrated schema,
one running service (real gRPC server, relay, consumer) per test session."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient  # type: ignore[import-untyped]

from comfyserve.contracts.events import AnyEvent, Event, dump_event, parse_event
from comfyserve.contracts.pb.workflow.v1 import workflow_pb2_grpc
from comfyserve.contracts.topics import (
    CANCEL_REQUESTED,
    FINISHED,
    SUBMITTED,
    topic_for,
)
from comfyserve.runtime.grpc import insecure_channel
from comfyserve.workflow.adapters.files import StoredFile
from comfyserve.workflow.app import Runtime, run_app
from comfyserve.workflow.migrate import upgrade_async
from comfyserve.workflow.settings import Settings

OBJECT_INFO = Path(__file__).parent / "validation" / "data" / "object_info_2024.json"
CATALOG_WORKER = "catalog-test-worker"
T = TypeVar("T")


class FakeFiles:
    """`FileLookup` over a dict; a file is visible to its own tenant only."""

    def __init__(self) -> None:
        self.files: dict[tuple[str, str], StoredFile] = {}
        # (tenant, folder, path) of uploads; (tenant, "output", job) of outputs.
        self.names: dict[tuple[str, str, str], StoredFile] = {}

    def add(self, tenant_id: str, filename: str, *, ready: bool = True) -> StoredFile:
        file_id = str(uuid.uuid4())
        stored = StoredFile(
            file_id=file_id,
            filename=filename,
            bucket="comfyserve",
            key=f"inputs/{tenant_id}/{file_id}",
            content_type="image/png",
            size=123,
            sha256="ab" * 32,
            ready=ready,
        )
        self.files[(tenant_id, file_id)] = stored
        return stored

    async def get_file(self, tenant_id: str, file_id: str) -> StoredFile | None:
        return self.files.get((tenant_id, file_id))

    def name(
        self, tenant_id: str, path: str, *, folder: str = "input", job: str = ""
    ) -> StoredFile:
        """A ready file named `path` in `folder`, or an output of `job`."""
        stored = self.add(tenant_id, path.rsplit("/", 1)[-1])
        self.names[(tenant_id, folder, job or path)] = stored
        return stored

    async def find_named(
        self, tenant_id: str, folder: str, path: str
    ) -> StoredFile | None:
        return self.names.get((tenant_id, folder, path))

    async def find_output(
        self, tenant_id: str, job_id: str, filename: str
    ) -> StoredFile | None:
        found = self.names.get((tenant_id, "output", job_id))
        return found if found is not None and found.filename == filename else None


class EventProbe:
    """Collects what the service publishes, by subject (job id)."""

    def __init__(self, consumer: AIOKafkaConsumer) -> None:
        self._consumer = consumer
        self.events: dict[str, list[tuple[str, AnyEvent]]] = defaultdict(list)
        self._changed = asyncio.Condition()

    async def run(self) -> None:
        async for record in self._consumer:
            event = parse_event(record.value)
            async with self._changed:
                self.events[event.subject].append((record.topic, event))
                self._changed.notify_all()

    async def wait_for(
        self,
        subject: str,
        match: Callable[[str, AnyEvent], bool],
        within: float = 20.0,
    ) -> tuple[str, AnyEvent]:
        async def found() -> tuple[str, AnyEvent]:
            async with self._changed:
                while True:
                    for topic, event in self.events[subject]:
                        if match(topic, event):
                            return topic, event
                    await self._changed.wait()

        return await asyncio.wait_for(found(), within)


async def _eventually(
    probe: Callable[[], Awaitable[T]],
    accept: Callable[[T], bool],
    within: float = 20.0,
) -> T:
    """Re-run `probe` until `accept` holds, failing after `within` seconds."""
    deadline = time.monotonic() + within
    while True:
        value = await probe()
        if accept(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {within}s; last: {value}")
        await asyncio.sleep(0.05)


@pytest.fixture(scope="session")
def session_id() -> str:
    return uuid.uuid4().hex[:12]


@pytest.fixture(scope="session")
def settings(stack: dict[str, str], session_id: str) -> Settings:
    return Settings(
        database_url=stack["DATABASE_URL"],
        schema_=f"workflow_test_{session_id}",
        kafka_bootstrap_servers=stack["KAFKA_BOOTSTRAP_SERVERS"],
        redis_url=stack["REDIS_URL"],
        grpc_port=0,
        metrics_port=0,
        consumer_group=f"workflow-test-{session_id}",
        ingress_topic=f"test.workflow.{session_id}.submit-requested",
        outbox_poll_seconds=0.5,
        max_attempts=3,
        lease_seconds=15,
        # Executors of other tests publish catalogs on the same brokers: only
        # this session's pools count here.
        pools=f"default,catalog-{session_id}",
        # The auth service is not part of these tests: the product's
        # end-to-end tests cover credentials on these calls.
        require_credentials=False,
    )


@pytest.fixture(scope="session")
def catalog_pool(session_id: str) -> str:
    """The one pool this session's catalog events may stand for."""
    return f"catalog-{session_id}"


@pytest.fixture(scope="session")
async def db(settings: Settings) -> AsyncIterator[asyncpg.Connection]:
    await upgrade_async(settings)
    connection = await asyncpg.connect(
        settings.asyncpg_dsn, server_settings={"search_path": settings.schema_}
    )
    try:
        await connection.execute(
            "INSERT INTO pool_catalogs"
            " (pool, worker_id, catalog_hash, object_info, updated_at)"
            " VALUES ('default', $1, 'test', $2::jsonb, now())",
            CATALOG_WORKER,
            OBJECT_INFO.read_text(encoding="utf-8"),
        )
        yield connection
    finally:
        await connection.execute(f'DROP SCHEMA IF EXISTS "{settings.schema_}" CASCADE')
        await connection.close()


@pytest.fixture(scope="session")
def files() -> FakeFiles:
    return FakeFiles()


@pytest.fixture(scope="session")
async def probe(settings: Settings) -> AsyncIterator[EventProbe]:
    """Reads the topics the service produces from their current end on."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers, enable_auto_commit=False
    )
    await consumer.start()
    # Every partition the broker has, not only the contracts' count: a topic
    # auto-created before the stack provisioned it has the broker's default.
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    await admin.start()
    try:
        described = await admin.describe_topics([SUBMITTED, CANCEL_REQUESTED, FINISHED])
    finally:
        await admin.close()
    partitions = [
        TopicPartition(topic["topic"], partition["partition"])
        for topic in described
        for partition in topic["partitions"]
    ]
    consumer.assign(partitions)
    await consumer.seek_to_end(*partitions)
    for partition in partitions:
        await consumer.position(partition)
    event_probe = EventProbe(consumer)
    task = asyncio.create_task(event_probe.run())
    yield event_probe
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await consumer.stop()


@pytest.fixture(scope="session")
async def runtime(
    settings: Settings, db: asyncpg.Connection, files: FakeFiles, probe: EventProbe
) -> AsyncIterator[Runtime]:
    async with run_app(
        settings, files=files, run_sweeper=False, grpc_host="127.0.0.1"
    ) as rt:
        yield rt


@pytest.fixture(scope="session")
async def stub(
    runtime: Runtime,
) -> AsyncIterator[workflow_pb2_grpc.WorkflowServiceStub]:
    channel = insecure_channel(f"127.0.0.1:{runtime.grpc_port}")
    yield workflow_pb2_grpc.WorkflowServiceStub(channel)
    await channel.close()


@pytest.fixture(scope="session")
async def executor(
    settings: Settings,
) -> AsyncIterator[Callable[[Event], Awaitable[None]]]:
    """Publishes events as an executor would."""
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers)
    await producer.start()

    async def publish(event: Event) -> None:
        await producer.send_and_wait(
            topic_for(event), dump_event(event), key=event.subject.encode()
        )

    yield publish
    await producer.stop()


def _workflow(**overrides: Any) -> str:
    graph: dict[str, Any] = {
        "1": {
            "class_type": "EmptyImage",
            "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 0},
        },
        "2": {
            "class_type": "SaveImage",
            "inputs": {"images": ["1", 0], "filename_prefix": "test"},
        },
    }
    graph.update(overrides)
    return json.dumps(graph)


@pytest.fixture(scope="session")
def eventually() -> Callable[..., Awaitable[Any]]:
    """`await eventually(probe, accept, within=20)`: re-runs `probe` until
    `accept(result)` holds."""
    return _eventually


@pytest.fixture(scope="session")
def make_workflow() -> Callable[..., str]:
    """An API-format graph (JSON text) valid against the 2024 catalog; keyword
    arguments add or replace nodes."""
    return _workflow


@pytest.fixture
async def private_pool(db: asyncpg.Connection) -> AsyncIterator[tuple[str, str]]:
    """A pool of its own and a node type only it has: graphs using the node are
    queued there, apart from every other test's jobs. Yields (pool, node type)."""
    marker = f"Marker_{uuid.uuid4().hex[:8]}"
    pool = f"pool-{marker.lower()}"
    object_info = json.loads(OBJECT_INFO.read_text(encoding="utf-8"))
    object_info[marker] = {
        "input": {"required": {}, "optional": {"label": ["STRING", {}]}},
        "output": [],
        "output_is_list": [],
        "output_name": [],
        "name": marker,
        "display_name": marker,
        "description": "",
        "category": "test",
        "output_node": True,
    }
    await db.execute(
        "INSERT INTO pool_catalogs (pool, worker_id, catalog_hash, object_info,"
        " updated_at) VALUES ($1, 'test', $2, $3::jsonb, now())",
        pool,
        marker,
        json.dumps(object_info),
    )
    yield pool, marker
    await db.execute("DELETE FROM pool_catalogs WHERE pool = $1", pool)
