"""GrpcFileStore against an in-process StorageService fake and a fake object
store: an output is one registration and its PUT; a preview is a short-lived
file of the tenant's `temp` folder, not a job output."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import httpx
import pytest

from comfyserve.contracts.events import OutputKind
from comfyserve.contracts.pb.storage.v1 import storage_pb2 as st
from comfyserve.contracts.pb.storage.v1 import storage_pb2_grpc as st_grpc
from comfyserve.executor.adapters.storage import PREVIEW_TTL_SECONDS, GrpcFileStore
from comfyserve.executor.errors import StorageFailed
from comfyserve.executor.jobs.models import NewOutput, NewPreview

PREVIEW = NewPreview(
    job_id="job-1", attempt=2, sequence=3, content_type="image/jpeg", data=b"jpeg"
)


class Storage(st_grpc.StorageServiceServicer):
    def __init__(self) -> None:
        self.created: list[st.CreateUploadRequest] = []
        self.completed: list[st.CompleteUploadRequest] = []

    async def CreateUpload(
        self, request: st.CreateUploadRequest, context: object
    ) -> st.CreateUploadResponse:
        self.created.append(request)
        return st.CreateUploadResponse(
            file=st.FileInfo(id="file-9"),
            upload_url="http://objects/put/file-9",
            upload_headers={"Content-Type": request.content_type},
        )

    async def CompleteUpload(
        self, request: st.CompleteUploadRequest, context: object
    ) -> st.FileInfo:
        self.completed.append(request)
        return st.FileInfo(id=request.file_id)


@pytest.fixture
async def storage() -> AsyncIterator[tuple[Storage, grpc.aio.Channel]]:
    servicer = Storage()
    server = grpc.aio.server()
    st_grpc.add_StorageServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    yield servicer, channel
    await channel.close()
    await server.stop(None)


async def test_a_preview_is_a_short_lived_temp_file_uploaded_and_completed(storage):
    servicer, channel = storage
    puts: list[httpx.Request] = []

    def objects(request: httpx.Request) -> httpx.Response:
        puts.append(request)
        return httpx.Response(200)

    async with httpx.AsyncClient(transport=httpx.MockTransport(objects)) as http:
        file_id = await GrpcFileStore(channel, http, 5).store_preview("t-1", PREVIEW)

    assert file_id == "file-9"
    [created] = servicer.created
    assert created.tenant_id == "t-1"
    assert created.purpose == st.FILE_PURPOSE_INPUT
    assert (created.folder, created.path) == (
        "temp",
        "comfyserve-previews/job-1/preview-2-3.jpg",
    )
    assert (created.filename, created.content_type, created.size) == (
        "preview-2-3.jpg",
        "image/jpeg",
        4,
    )
    assert created.ttl_seconds == PREVIEW_TTL_SECONDS
    assert not created.HasField("job_id")
    [put] = puts
    assert (put.method, str(put.url), put.content) == (
        "PUT",
        "http://objects/put/file-9",
        b"jpeg",
    )
    assert [c.file_id for c in servicer.completed] == ["file-9"]


async def test_an_object_store_refusal_is_storage_failed(storage):
    _, channel = storage
    refuse = httpx.MockTransport(lambda _request: httpx.Response(503))

    async with httpx.AsyncClient(transport=refuse) as http:
        with pytest.raises(StorageFailed, match="PUT preview file-9"):
            await GrpcFileStore(channel, http, 5).store_preview("t-1", PREVIEW)


async def test_an_output_is_one_registration_and_its_put_with_nothing_after(storage):
    servicer, channel = storage
    puts: list[httpx.Request] = []

    def objects(request: httpx.Request) -> httpx.Response:
        puts.append(request)
        return httpx.Response(200)

    output = NewOutput(
        job_id="job-1",
        attempt=2,
        node_id="9",
        index=0,
        filename="out.png",
        kind=OutputKind.IMAGE,
        content_type="image/png",
        data=b"png",
        sha256="ab" * 32,
        width=64,
        height=32,
    )
    async with httpx.AsyncClient(transport=httpx.MockTransport(objects)) as http:
        stored = await GrpcFileStore(channel, http, 5).store_output("t-1", output)

    [created] = servicer.created
    assert created.purpose == st.FILE_PURPOSE_OUTPUT
    assert (created.job_id, created.attempt, created.node_id, created.index) == (
        "job-1",
        2,
        "9",
        0,
    )
    assert (created.size, created.sha256) == (3, "ab" * 32)
    assert (created.width, created.height) == (64, 32)
    [put] = puts
    assert (put.method, put.content) == ("PUT", b"png")
    # Storage makes it ready when the job's end or a reader finds the object.
    assert servicer.completed == []
    assert (stored.file_id, stored.size, stored.width, stored.height) == (
        "file-9",
        3,
        64,
        32,
    )
