"""Storage test fixtures: a fake object store and the real service in-process."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta

import grpc
import pytest
from sqlalchemy import text

from comfyserve.contracts.pb.storage.v1 import storage_pb2_grpc as pb_grpc
from comfyserve.storage.adapters.minio_store import MinioObjectStore
from comfyserve.storage.app import App, running
from comfyserve.storage.db import create_engine
from comfyserve.storage.files.service import utcnow
from comfyserve.storage.objects import ObjectStat, ObjectStoreError
from comfyserve.storage.settings import Settings

TEST_MAX_UPLOAD_BYTES = 64 * 1024


class FakeObjectStore:
    """In-memory object store; `fail_deletes` makes every delete fail."""

    def __init__(self, bucket: str = "fake-bucket") -> None:
        self._bucket = bucket
        self.objects: dict[str, bytes] = {}
        self.fail_deletes = False

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
        data = self.objects.get(key)
        return None if data is None else ObjectStat(size=len(data), content_type=None)

    async def sha256(self, key: str) -> str:
        return hashlib.sha256(self.objects[key]).hexdigest()

    async def delete(self, key: str) -> None:
        if self.fail_deletes:
            raise ObjectStoreError("delete refused by the test")
        self.objects.pop(key, None)


@pytest.fixture
def fake_store() -> FakeObjectStore:
    return FakeObjectStore()


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
        "max_upload_bytes": TEST_MAX_UPLOAD_BYTES,
        # Tests run retention themselves, at the instants they choose.
        "retention_interval_seconds": 3600,
    }
    values.update(overrides)
    return Settings.model_validate(values)


@pytest.fixture(scope="session")
def schema_dropper() -> Callable[[Settings], Awaitable[None]]:
    return drop_schema


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


@pytest.fixture(scope="session")
async def storage_app(storage_settings: Settings) -> AsyncIterator[App]:
    try:
        async with running(storage_settings) as app:
            yield app
            # Retention far in the future removes every object the tests left in
            # the shared bucket, along with its row.
            await app.files.run_retention_once(utcnow() + timedelta(days=3650))
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
