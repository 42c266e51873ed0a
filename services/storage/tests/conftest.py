"""Storage test fixtures: a fake object store and the real service in-process."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import timedelta

import grpc
import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from comfyserve.contracts.pb.storage.v1 import storage_pb2_grpc as pb_grpc
from comfyserve.storage.adapters.minio_store import MinioObjectStore
from comfyserve.storage.app import App, running
from comfyserve.storage.clock import utcnow
from comfyserve.storage.db import create_engine, migrate, session_factory
from comfyserve.storage.fences.service import FenceService
from comfyserve.storage.files.deletion import DeletionService
from comfyserve.storage.files.lookups import LookupService
from comfyserve.storage.files.reads import ReadService
from comfyserve.storage.files.retention import RetentionService
from comfyserve.storage.files.uploads import UploadService
from comfyserve.storage.objects import ObjectStat, ObjectStoreError
from comfyserve.storage.settings import Settings

TEST_MAX_UPLOAD_BYTES = 64 * 1024


class FakeObjectStore:
    """In-memory object store; `fail_deletes` makes every delete fail,
    `fail_stats` every stat."""

    def __init__(self, bucket: str = "fake-bucket") -> None:
        self._bucket = bucket
        self.objects: dict[str, bytes] = {}
        self.fail_deletes = False
        self.fail_stats = False
        self.stats = 0

    @property
    def bucket(self) -> str:
        return self._bucket

    async def ensure_bucket(self) -> None:
        return None

    async def presign_put(self, key: str, expires: timedelta) -> str:
        return f"fake://{self._bucket}/{key}?put&expires={int(expires.total_seconds())}"

    async def presign_get(
        self, key: str, expires: timedelta, *, content_type: str, disposition: str
    ) -> str:
        return f"fake://{self._bucket}/{key}?get&type={content_type}"

    async def stat(self, key: str) -> ObjectStat | None:
        if self.fail_stats:
            raise ObjectStoreError("stat refused by the test")
        self.stats += 1
        data = self.objects.get(key)
        return None if data is None else ObjectStat(size=len(data), content_type=None)

    async def sha256(self, key: str) -> str:
        return hashlib.sha256(self.objects[key]).hexdigest()

    async def delete(self, key: str) -> None:
        if self.fail_deletes:
            raise ObjectStoreError("delete refused by the test")
        self.objects.pop(key, None)

    async def list_keys(self, prefix: str) -> list[str]:
        return [key for key in self.objects if key.startswith(prefix)]


class BlockingObjectStore(FakeObjectStore):
    """A fake store whose `blocked` operation, once entered, waits for `release`."""

    def __init__(self, blocked: str) -> None:
        super().__init__()
        self.blocked = blocked
        self.entered = asyncio.Event()
        self.release = asyncio.Event()

    async def _hold(self, operation: str) -> None:
        if operation == self.blocked:
            self.entered.set()
            await self.release.wait()

    async def stat(self, key: str) -> ObjectStat | None:
        await self._hold("stat")
        return await super().stat(key)

    async def sha256(self, key: str) -> str:
        await self._hold("sha256")
        return await super().sha256(key)

    async def delete(self, key: str) -> None:
        await self._hold("delete")
        await super().delete(key)


@pytest.fixture
def fake_store() -> FakeObjectStore:
    return FakeObjectStore()


@pytest.fixture
def blocking_store() -> type[BlockingObjectStore]:
    return BlockingObjectStore


def _settings(stack: dict[str, str], schema: str, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "database_url": stack["DATABASE_URL"],
        "schema_name": schema,
        "grpc_port": 0,
        "metrics_port": 0,
        "s3_endpoint": stack["S3_ENDPOINT"],
        "s3_access_key": stack["S3_ACCESS_KEY"],
        "s3_secret_key": stack["S3_SECRET_KEY"],
        "s3_bucket": stack["S3_BUCKET"],
        "s3_secure": stack["S3_SECURE"],
        "s3_region": stack["S3_REGION"],
        "kafka_bootstrap_servers": stack["KAFKA_BOOTSTRAP_SERVERS"],
        # Never the product's topic or group: a test must not take, nor commit,
        # the job ends of a running stack.
        "finished_topic": f"test.{schema}.finished",
        "consumer_group": f"test.{schema}",
        "max_upload_bytes": TEST_MAX_UPLOAD_BYTES,
        # Tests run retention themselves, at the instants they choose.
        "retention_interval_seconds": 3600,
        # The service alone: its callers' credentials are tested with a fake
        # verifier (files/test_grpc_auth_integration.py).
        "require_credentials": False,
    }
    values.update(overrides)
    return Settings.model_validate(values)


async def drop_schema(settings: Settings) -> None:
    engine = create_engine(settings)
    try:
        async with engine.begin() as connection:
            await connection.execute(
                text(f'DROP SCHEMA IF EXISTS "{settings.schema_name}" CASCADE')
            )
    finally:
        await engine.dispose()


@pytest.fixture(scope="session")
def settings_for(stack: dict[str, str]) -> Callable[..., Settings]:
    """Settings against the local stack in a schema of the caller's own."""

    def build(schema: str, **overrides: object) -> Settings:
        return _settings(stack, schema, **overrides)

    return build


@pytest.fixture(scope="session")
def storage_settings(settings_for: Callable[..., Settings]) -> Settings:
    return settings_for(f"storage_test_{uuid.uuid4().hex[:12]}")


class TestTopics:
    """Creates test topics up front, as the stack provisions the product's (the
    service subscribes without creating, and would not see a topic created after
    it subscribed until its next metadata refresh), and deletes them at the end."""

    def __init__(self, bootstrap_servers: str) -> None:
        self._admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers)
        self._created: list[str] = []

    async def start(self) -> None:
        await self._admin.start()

    async def create(self, *names: str) -> None:
        await self._admin.create_topics([NewTopic(name, 1, 1) for name in names])
        self._created.extend(names)

    async def close(self) -> None:
        try:
            if self._created:
                await self._admin.delete_topics(self._created)
        finally:
            await self._admin.close()


@pytest.fixture(scope="session")
async def test_topics(stack: dict[str, str]) -> AsyncIterator[TestTopics]:
    topics = TestTopics(stack["KAFKA_BOOTSTRAP_SERVERS"])
    await topics.start()
    try:
        yield topics
    finally:
        await topics.close()


@pytest.fixture(scope="session")
async def storage_app(
    storage_settings: Settings, test_topics: TestTopics
) -> AsyncIterator[App]:
    await test_topics.create(storage_settings.finished_topic)
    try:
        async with running(storage_settings) as app:
            yield app
            # Retention far in the future removes every object the tests left in
            # the shared bucket, along with its row.
            await app.retention.sweep_once(utcnow() + timedelta(days=3650))
    finally:
        await drop_schema(storage_settings)


@pytest.fixture(scope="session")
async def channel(storage_app: App) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{storage_app.grpc_port}") as chan:
        yield chan


@pytest.fixture(scope="session")
def client(channel: grpc.aio.Channel) -> pb_grpc.StorageServiceAsyncStub:
    return pb_grpc.StorageServiceStub(channel)  # type: ignore[return-value]


@pytest.fixture(scope="session")
def real_store(storage_settings: Settings) -> MinioObjectStore:
    return MinioObjectStore.from_settings(storage_settings)


@dataclass(frozen=True)
class Isolated:
    settings: Settings
    engine: AsyncEngine
    store: FakeObjectStore
    uploads: UploadService
    reads: ReadService
    deletion: DeletionService
    lookups: LookupService
    retention: RetentionService
    fences: FenceService

    async def scalar(self, sql: str, **params: object) -> object:
        """One value of a query run in the schema, outside the services."""
        async with self.engine.connect() as connection:
            result = await connection.execute(text(sql), params)
            return result.scalar()


@pytest.fixture
async def isolated(
    settings_for: Callable[..., Settings], fake_store: FakeObjectStore
) -> AsyncIterator[Isolated]:
    """File and fence services on a schema of their own, over the fake store."""
    settings = settings_for(f"storage_test_{uuid.uuid4().hex[:12]}")
    engine = create_engine(settings)
    try:
        await migrate(engine, settings)
        sessions = session_factory(engine)
        deletion = DeletionService(sessions, fake_store)
        yield Isolated(
            settings=settings,
            engine=engine,
            store=fake_store,
            uploads=UploadService(sessions, fake_store, settings),
            reads=ReadService(sessions, fake_store, settings),
            deletion=deletion,
            lookups=LookupService(sessions, settings),
            retention=RetentionService(sessions, deletion),
            fences=FenceService(sessions, fake_store, deletion, settings),
        )
    finally:
        await engine.dispose()
        await drop_schema(settings)
