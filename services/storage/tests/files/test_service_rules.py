"""Request rules the service enforces before it touches the database or the store."""

import asyncio
import contextlib
import functools

import grpc
import pytest
from prometheus_client import CollectorRegistry

from comfyserve.contracts.pb.storage.v1 import storage_pb2 as pb
from comfyserve.contracts.pb.storage.v1 import storage_pb2_grpc as pb_grpc
from comfyserve.runtime.grpc import insecure_channel, serve_grpc
from comfyserve.storage.errors import InvalidArgument, StorageError, TooLarge
from comfyserve.storage.files.deletion import DeletionService
from comfyserve.storage.files.grpc import StorageServicer
from comfyserve.storage.files.lookups import LookupService
from comfyserve.storage.files.models import FilePurpose, UploadRequest
from comfyserve.storage.files.reads import ReadService
from comfyserve.storage.files.uploads import UploadService
from comfyserve.storage.settings import Settings

LIMIT = 1000


class UnreachableDatabase:
    """Session factory for checks that must be decided before any query."""

    def __init__(self, error: Exception | None = None) -> None:
        self.error = error or AssertionError("the database must not be reached")

    def __call__(self):
        raise self.error

    def begin(self):
        raise self.error


@pytest.fixture
def settings() -> Settings:
    return Settings.model_validate(
        {
            "database_url": "postgresql://u:p@db/x",
            "s3_endpoint": "s3:9000",
            "s3_access_key": "a",
            "s3_secret_key": "s",
            "s3_bucket": "files",
            "max_upload_bytes": LIMIT,
        }
    )


@pytest.fixture
def uploads(settings, fake_store) -> UploadService:
    return UploadService(UnreachableDatabase(), fake_store, settings)


@pytest.fixture
def reads(settings, fake_store) -> ReadService:
    return ReadService(UnreachableDatabase(), fake_store, settings)


def servicer(sessions, store, settings) -> StorageServicer:
    return StorageServicer(
        UploadService(sessions, store, settings),
        ReadService(sessions, store, settings),
        DeletionService(sessions, store),
        LookupService(sessions, settings),
    )


def upload(**changes) -> UploadRequest:
    values = {
        "tenant_id": "tenant1",
        "purpose": FilePurpose.INPUT,
        "filename": "cat.png",
        "content_type": "image/png",
        "size": 10,
        "job_id": None,
        "node_id": None,
        "index": None,
        "sha256": None,
        "ttl_seconds": None,
    }
    values.update(changes)
    return UploadRequest(**values)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"content_type": "text/html"}, "content_type"),
        ({"filename": "../../etc/passwd"}, "filename"),
        ({"filename": ""}, "filename"),
        ({"size": -1}, "size"),
        ({"sha256": "abc"}, "sha256"),
        ({"ttl_seconds": 0}, "ttl_seconds"),
        ({"tenant_id": ""}, "tenant_id"),
        ({"tenant_id": "../other"}, "tenant_id"),
        ({"purpose": None}, "purpose"),
        ({"job_id": "j1"}, "job_id"),
        ({"index": 0}, "index"),
        ({"attempt": 1}, "attempt"),
        ({"purpose": FilePurpose.OUTPUT, "node_id": "9", "index": 0}, "job_id"),
        ({"purpose": FilePurpose.OUTPUT, "job_id": "j1", "index": 0}, "node_id"),
        ({"purpose": FilePurpose.OUTPUT, "job_id": "j1", "node_id": "9"}, "index"),
        (
            {
                "purpose": FilePurpose.OUTPUT,
                "job_id": "j/1",
                "node_id": "9",
                "index": 0,
            },
            "job_id",
        ),
        (
            {
                "purpose": FilePurpose.OUTPUT,
                "job_id": "j1",
                "node_id": "9",
                "index": -1,
            },
            "index",
        ),
        (
            {
                "purpose": FilePurpose.OUTPUT,
                "job_id": "j1",
                "node_id": "9",
                "index": 0,
                "attempt": 0,
            },
            "attempt",
        ),
    ],
)
async def test_invalid_uploads_name_the_field(uploads, changes, field) -> None:
    with pytest.raises(InvalidArgument) as caught:
        await uploads.create_upload(upload(**changes))
    assert caught.value.field == field


async def test_declared_size_over_the_limit_is_resource_exhausted(uploads) -> None:
    with pytest.raises(TooLarge):
        await uploads.create_upload(upload(size=LIMIT + 1))


async def test_malformed_file_id_is_not_found(reads) -> None:
    with pytest.raises(StorageError) as caught:
        await reads.get_file("tenant1", "not-a-uuid")
    assert caught.value.code == grpc.StatusCode.NOT_FOUND


@pytest.mark.parametrize(
    ("page_size", "cursor", "field"),
    [(-1, "", "page_size"), (10, "bm90IGEgY3Vyc29y", "cursor"), (10, "%%%", "cursor")],
)
async def test_bad_listing_arguments(reads, page_size, cursor, field) -> None:
    with pytest.raises(InvalidArgument) as caught:
        await reads.list_files("tenant1", page_size=page_size, cursor=cursor)
    assert caught.value.field == field


@contextlib.asynccontextmanager
async def serving(servicer: StorageServicer):
    """The servicer behind the runtime's server (interceptor, metrics)."""
    registry = CollectorRegistry()
    async with serve_grpc(
        service="comfyserve.storage.v1.StorageService",
        add_servicers=functools.partial(
            pb_grpc.add_StorageServiceServicer_to_server, servicer
        ),
        registry=registry,
        metrics_prefix="storage",
        address="127.0.0.1:0",
    ) as server:
        channel = insecure_channel(f"127.0.0.1:{server.port}")
        yield pb_grpc.StorageServiceStub(channel), registry
        await channel.close()


async def test_grpc_maps_service_errors_to_their_status(settings, fake_store) -> None:
    request = pb.CreateUploadRequest(
        tenant_id="tenant1",
        purpose=pb.FILE_PURPOSE_INPUT,
        filename="page.html",
        content_type="text/html",
        size=10,
    )
    async with serving(servicer(UnreachableDatabase(), fake_store, settings)) as (
        stub,
        _,
    ):
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.CreateUpload(request)
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert (refused.value.details() or "").startswith("content_type:")

        request.content_type = "image/png"
        request.size = LIMIT + 1
        with pytest.raises(grpc.aio.AioRpcError) as too_large:
            await stub.CreateUpload(request)
        assert too_large.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


async def test_grpc_hides_unexpected_errors_as_internal(settings, fake_store) -> None:
    broken = servicer(
        UnreachableDatabase(RuntimeError("connection refused")), fake_store, settings
    )
    file_id = "00000000-0000-4000-8000-000000000001"
    async with serving(broken) as (stub, registry):
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await stub.GetFile(pb.GetFileRequest(tenant_id="tenant1", file_id=file_id))
    assert raised.value.code() == grpc.StatusCode.INTERNAL
    assert raised.value.details() == "internal error"
    labels = {"method": "GetFile", "code": "INTERNAL"}
    async with asyncio.timeout(5):
        # Counted just after the answer went out.
        while True:
            counted = registry.get_sample_value("storage_grpc_requests_total", labels)
            if counted is not None:
                break
            await asyncio.sleep(0.01)
    assert counted == 1
