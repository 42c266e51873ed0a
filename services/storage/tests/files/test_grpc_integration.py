"""StorageService end to end: the real server in-process, real Postgres and S3."""

import hashlib
import uuid
from datetime import timedelta

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from comfyserve.contracts.pb.storage.v1 import storage_pb2 as pb
from comfyserve.storage.app import SERVICE_NAME
from comfyserve.storage.clock import utcnow

pytestmark = pytest.mark.integration

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4


@pytest.fixture
def tenant(unique: str) -> str:
    return f"t{unique}"


@pytest.fixture
async def http():
    async with httpx.AsyncClient(timeout=30) as client:
        yield client


async def create(client, tenant: str, **fields) -> pb.CreateUploadResponse:
    request = pb.CreateUploadRequest(
        tenant_id=tenant,
        purpose=fields.pop("purpose", pb.FILE_PURPOSE_INPUT),
        filename=fields.pop("filename", "cat.png"),
        content_type=fields.pop("content_type", "image/png"),
        size=fields.pop("size", len(PNG)),
        **fields,
    )
    return await client.CreateUpload(request)


async def put(http, created: pb.CreateUploadResponse, data: bytes) -> None:
    response = await http.put(
        created.upload_url, content=data, headers=dict(created.upload_headers)
    )
    assert response.status_code == 200, response.text


async def uploaded(
    client, http, tenant: str, data: bytes = PNG, **fields
) -> pb.FileInfo:
    created = await create(client, tenant, size=len(data), **fields)
    await put(http, created, data)
    return await client.CompleteUpload(
        pb.CompleteUploadRequest(tenant_id=tenant, file_id=created.file.id)
    )


async def status_of(call) -> grpc.StatusCode:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    return caught.value.code()


async def test_health_reports_serving(channel) -> None:
    health = health_pb2_grpc.HealthStub(channel)
    for service in ("", SERVICE_NAME):
        answer = await health.Check(health_pb2.HealthCheckRequest(service=service))
        assert answer.status == health_pb2.HealthCheckResponse.SERVING


async def test_upload_then_download_returns_the_bytes(client, http, tenant) -> None:
    created = await create(
        client,
        tenant,
        filename="photos/2024/cat.png",
        sha256=hashlib.sha256(PNG).hexdigest(),
    )
    assert created.file.state == pb.FILE_STATE_PENDING
    assert created.file.filename == "cat.png"
    assert created.file.key == f"inputs/{tenant}/{created.file.id}/cat.png"
    assert dict(created.upload_headers) == {"Content-Type": "image/png"}
    assert created.file.HasField("expires_at")
    await put(http, created, PNG)

    done = await client.CompleteUpload(
        pb.CompleteUploadRequest(
            tenant_id=tenant, file_id=created.file.id, width=64, height=32
        )
    )
    assert done.state == pb.FILE_STATE_READY
    assert (done.size, done.width, done.height) == (len(PNG), 64, 32)
    assert done.sha256 == hashlib.sha256(PNG).hexdigest()

    link = await client.GetDownloadUrl(
        pb.GetDownloadUrlRequest(tenant_id=tenant, file_id=done.id)
    )
    assert link.file_id == done.id
    lifetime = link.expires_at.ToDatetime(tzinfo=utcnow().tzinfo) - utcnow()
    assert timedelta(seconds=200) < lifetime <= timedelta(seconds=300)
    response = await http.get(link.url)
    assert response.status_code == 200
    assert response.content == PNG
    assert response.headers["content-type"] == "image/png"
    assert response.headers["content-disposition"].startswith(
        'attachment; filename="cat.png"'
    )


async def test_download_expiry_is_capped(client, http, tenant) -> None:
    done = await uploaded(client, http, tenant)
    link = await client.GetDownloadUrl(
        pb.GetDownloadUrlRequest(
            tenant_id=tenant, file_id=done.id, expires_in_seconds=7 * 24 * 3600
        )
    )
    lifetime = link.expires_at.ToDatetime(tzinfo=utcnow().tzinfo) - utcnow()
    assert lifetime <= timedelta(seconds=3600)
    assert "X-Amz-Expires=3600" in link.url


async def test_another_tenant_gets_not_found(client, http, tenant) -> None:
    done = await uploaded(client, http, tenant)
    other = f"{tenant}x"
    calls = [
        client.GetFile(pb.GetFileRequest(tenant_id=other, file_id=done.id)),
        client.GetDownloadUrl(
            pb.GetDownloadUrlRequest(tenant_id=other, file_id=done.id)
        ),
        client.GetDownloadUrls(
            pb.GetDownloadUrlsRequest(tenant_id=other, file_ids=[done.id])
        ),
        client.CompleteUpload(
            pb.CompleteUploadRequest(tenant_id=other, file_id=done.id)
        ),
        client.DeleteFile(pb.DeleteFileRequest(tenant_id=other, file_id=done.id)),
    ]
    for call in calls:
        assert await status_of(call) == grpc.StatusCode.NOT_FOUND
    unknown = str(uuid.uuid4())
    assert (
        await status_of(
            client.GetFile(pb.GetFileRequest(tenant_id=tenant, file_id=unknown))
        )
        == grpc.StatusCode.NOT_FOUND
    )
    still = await client.GetFile(pb.GetFileRequest(tenant_id=tenant, file_id=done.id))
    assert still.state == pb.FILE_STATE_READY


async def test_oversized_declared_size_is_refused(
    client, tenant, storage_settings
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await create(client, tenant, size=storage_settings.max_upload_bytes + 1)
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


async def test_oversized_upload_is_refused_and_removed(
    client, http, tenant, storage_settings, real_store
) -> None:
    created = await create(client, tenant, size=10)
    await put(http, created, b"x" * (storage_settings.max_upload_bytes + 1))
    assert (
        await status_of(
            client.CompleteUpload(
                pb.CompleteUploadRequest(tenant_id=tenant, file_id=created.file.id)
            )
        )
        == grpc.StatusCode.RESOURCE_EXHAUSTED
    )
    assert await real_store.stat(created.file.key) is None


async def test_disallowed_content_type_names_the_field(client, tenant) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await create(client, tenant, filename="page.html", content_type="text/html")
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details().startswith("content_type:")


async def test_complete_without_upload_and_download_before_ready(
    client, tenant
) -> None:
    created = await create(client, tenant)
    file_id = created.file.id
    assert (
        await status_of(
            client.CompleteUpload(
                pb.CompleteUploadRequest(tenant_id=tenant, file_id=file_id)
            )
        )
        == grpc.StatusCode.FAILED_PRECONDITION
    )
    assert (
        await status_of(
            client.GetDownloadUrl(
                pb.GetDownloadUrlRequest(tenant_id=tenant, file_id=file_id)
            )
        )
        == grpc.StatusCode.FAILED_PRECONDITION
    )


async def test_sha256_mismatch_is_refused_and_removed(
    client, http, tenant, real_store
) -> None:
    created = await create(client, tenant, sha256=hashlib.sha256(b"other").hexdigest())
    await put(http, created, PNG)
    assert (
        await status_of(
            client.CompleteUpload(
                pb.CompleteUploadRequest(tenant_id=tenant, file_id=created.file.id)
            )
        )
        == grpc.StatusCode.FAILED_PRECONDITION
    )
    assert await real_store.stat(created.file.key) is None


async def test_an_output_of_another_size_than_declared_is_refused_and_removed(
    client, http, tenant, real_store
) -> None:
    created = await create(
        client,
        tenant,
        purpose=pb.FILE_PURPOSE_OUTPUT,
        job_id=str(uuid.uuid4()),
        node_id="9",
        index=0,
        sha256=hashlib.sha256(PNG).hexdigest(),
    )
    await put(http, created, PNG[:-1])
    assert (
        await status_of(
            client.CompleteUpload(
                pb.CompleteUploadRequest(tenant_id=tenant, file_id=created.file.id)
            )
        )
        == grpc.StatusCode.FAILED_PRECONDITION
    )
    assert await real_store.stat(created.file.key) is None


async def test_a_declared_output_keeps_its_sha256(client, http, tenant) -> None:
    digest = hashlib.sha256(PNG).hexdigest()
    created = await create(
        client,
        tenant,
        purpose=pb.FILE_PURPOSE_OUTPUT,
        job_id=str(uuid.uuid4()),
        node_id="9",
        index=0,
        sha256=digest,
    )
    await put(http, created, PNG)
    done = await client.CompleteUpload(
        pb.CompleteUploadRequest(tenant_id=tenant, file_id=created.file.id)
    )
    assert (done.sha256, done.size) == (digest, len(PNG))


async def test_an_output_is_downloadable_after_its_put_without_completing_it(
    client, http, tenant
) -> None:
    # The executor registers an output with its pixel size and PUTs it; the
    # first reader (the job's end may not have reached storage yet) finds it.
    created = await create(
        client,
        tenant,
        purpose=pb.FILE_PURPOSE_OUTPUT,
        job_id=str(uuid.uuid4()),
        node_id="9",
        index=0,
        attempt=1,
        width=64,
        height=32,
    )
    assert created.file.state == pb.FILE_STATE_PENDING
    await put(http, created, PNG)

    [link] = (
        await client.GetDownloadUrls(
            pb.GetDownloadUrlsRequest(tenant_id=tenant, file_ids=[created.file.id])
        )
    ).urls
    response = await http.get(link.url)
    assert (response.status_code, response.content) == (200, PNG)
    info = await client.GetFile(
        pb.GetFileRequest(tenant_id=tenant, file_id=created.file.id)
    )
    assert info.state == pb.FILE_STATE_READY
    assert (info.size, info.width, info.height) == (len(PNG), 64, 32)


async def test_output_re_registration_keeps_one_row_and_key(
    client, http, tenant
) -> None:
    job = str(uuid.uuid4())
    slot = {
        "purpose": pb.FILE_PURPOSE_OUTPUT,
        "job_id": job,
        "node_id": "9",
        "index": 0,
    }
    first = await create(client, tenant, filename="ComfyUI_00001_.png", **slot)
    assert first.file.key == f"outputs/{tenant}/{job}/1/9/0-ComfyUI_00001_.png"
    await put(http, first, PNG)
    await client.CompleteUpload(
        pb.CompleteUploadRequest(tenant_id=tenant, file_id=first.file.id)
    )

    again = await create(
        client,
        tenant,
        filename="ComfyUI_00002_.webp",
        content_type="image/webp",
        size=5,
        **slot,
    )
    assert again.file.id == first.file.id
    assert again.file.key == first.file.key
    assert again.file.state == pb.FILE_STATE_PENDING
    assert (again.file.size, again.file.content_type) == (5, "image/webp")
    await put(http, again, b"webp!")
    done = await client.CompleteUpload(
        pb.CompleteUploadRequest(tenant_id=tenant, file_id=again.file.id)
    )
    assert done.size == 5

    listed = await client.ListFiles(pb.ListFilesRequest(tenant_id=tenant, job_id=job))
    assert [info.id for info in listed.files] == [first.file.id]

    other = f"{tenant}x"
    assert (
        await status_of(create(client, other, **slot))
        == grpc.StatusCode.FAILED_PRECONDITION
    )


async def test_each_attempt_of_a_job_registers_its_own_output(client, tenant) -> None:
    job = str(uuid.uuid4())
    slot = {
        "purpose": pb.FILE_PURPOSE_OUTPUT,
        "job_id": job,
        "node_id": "9",
        "index": 0,
    }
    legacy = await create(client, tenant, **slot)
    second = await create(client, tenant, attempt=2, **slot)
    again = await create(client, tenant, attempt=2, **slot)

    assert legacy.file.attempt == 1
    assert (second.file.attempt, second.file.key) == (
        2,
        f"outputs/{tenant}/{job}/2/9/0-cat.png",
    )
    assert second.file.id != legacy.file.id
    assert (again.file.id, again.file.key) == (second.file.id, second.file.key)
    listed = await client.ListFiles(pb.ListFilesRequest(tenant_id=tenant, job_id=job))
    assert sorted(info.attempt for info in listed.files) == [1, 2]


async def test_delete_removes_object_and_row(client, http, tenant, real_store) -> None:
    done = await uploaded(client, http, tenant)
    await client.DeleteFile(pb.DeleteFileRequest(tenant_id=tenant, file_id=done.id))
    assert await real_store.stat(done.key) is None
    assert (
        await status_of(
            client.GetFile(pb.GetFileRequest(tenant_id=tenant, file_id=done.id))
        )
        == grpc.StatusCode.NOT_FOUND
    )
    assert (
        await status_of(
            client.DeleteFile(pb.DeleteFileRequest(tenant_id=tenant, file_id=done.id))
        )
        == grpc.StatusCode.NOT_FOUND
    )


async def test_download_urls_follow_request_order(client, http, tenant) -> None:
    first = await uploaded(
        client, http, tenant, b"one", filename="one.txt", content_type="text/plain"
    )
    second = await uploaded(
        client, http, tenant, b"two", filename="two.txt", content_type="text/plain"
    )
    answer = await client.GetDownloadUrls(
        pb.GetDownloadUrlsRequest(tenant_id=tenant, file_ids=[second.id, first.id])
    )
    assert [link.file_id for link in answer.urls] == [second.id, first.id]
    bodies = [(await http.get(link.url)).content for link in answer.urls]
    assert bodies == [b"two", b"one"]
    assert (
        await status_of(
            client.GetDownloadUrls(
                pb.GetDownloadUrlsRequest(
                    tenant_id=tenant, file_ids=[first.id, str(uuid.uuid4())]
                )
            )
        )
        == grpc.StatusCode.NOT_FOUND
    )


async def test_list_files_pages_newest_first(client, tenant) -> None:
    created = [
        (await create(client, tenant, filename=f"f{n}.png")).file.id for n in range(5)
    ]
    seen: list[str] = []
    cursor = ""
    pages = 0
    while True:
        page = await client.ListFiles(
            pb.ListFilesRequest(tenant_id=tenant, page_size=2, cursor=cursor)
        )
        pages += 1
        seen.extend(info.id for info in page.files)
        assert all(info.tenant_id == tenant for info in page.files)
        if not page.next_cursor:
            break
        cursor = page.next_cursor
    assert pages == 3
    assert seen == list(reversed(created))

    everything = await client.ListFiles(pb.ListFilesRequest(tenant_id=tenant))
    assert [info.id for info in everything.files] == seen
    assert everything.next_cursor == ""
    assert (
        await status_of(
            client.ListFiles(pb.ListFilesRequest(tenant_id=tenant, cursor="garbage"))
        )
        == grpc.StatusCode.INVALID_ARGUMENT
    )


async def test_many_outputs_in_a_row_all_register(client, tenant) -> None:
    # Postgres moves a prepared statement to a generic plan after five runs; the
    # upsert must still find the partial unique index then.
    job = str(uuid.uuid4())
    created = [
        await create(
            client,
            tenant,
            purpose=pb.FILE_PURPOSE_OUTPUT,
            job_id=job,
            node_id="9",
            index=index,
            filename=f"out_{index}.png",
        )
        for index in range(12)
    ]
    assert len({c.file.id for c in created}) == 12


async def test_usage_counts_each_tenants_ready_files(client, http, tenant) -> None:
    other, idle = f"{tenant}x", f"{tenant}y"
    await uploaded(client, http, tenant, b"abc", filename="a.txt")
    await uploaded(client, http, tenant, b"defgh", filename="b.txt")
    await uploaded(client, http, other, b"ij", filename="c.txt")
    await create(client, tenant, size=7)
    gone = await uploaded(client, http, tenant, b"klmn", filename="d.txt")
    await client.DeleteFile(pb.DeleteFileRequest(tenant_id=tenant, file_id=gone.id))

    answer = await client.GetUsage(
        pb.GetStorageUsageRequest(tenant_ids=[other, tenant, idle])
    )

    assert [(e.tenant_id, e.files, e.bytes) for e in answer.tenants] == sorted(
        [(tenant, 2, 8), (other, 1, 2), (idle, 0, 0)]
    )
