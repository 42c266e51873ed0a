"""Who may call StorageService: the real servicer and services on Postgres
behind the runtime's credential check, with the auth service's verdicts faked."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client import CollectorRegistry

from comfyserve.contracts.pb.storage.v1 import storage_pb2 as pb
from comfyserve.contracts.pb.storage.v1 import storage_pb2_grpc as pb_grpc
from comfyserve.contracts.scopes import SERVICE_SCOPE, Scope
from comfyserve.runtime.auth import Principal, PrincipalKind, Unauthenticated
from comfyserve.runtime.grpc import insecure_channel, serve_grpc
from comfyserve.storage.app import SERVICE_NAME, running
from comfyserve.storage.files.grpc import StorageServicer
from comfyserve.storage.files.models import FilePurpose, UploadRequest

pytestmark = pytest.mark.integration

TENANT = "tenant-a"
OTHER = "tenant-b"


def tenant_key(scopes: set[str], tenant_id: str = TENANT) -> Principal:
    return Principal(
        kind=PrincipalKind.API_KEY,
        subject="key:k1",
        tenant_id=tenant_id,
        scopes=frozenset(scopes),
    )


PRINCIPALS = {
    "csk_reader": tenant_key({Scope.FILES_READ}),
    "csk_writer": tenant_key({Scope.FILES_READ, Scope.FILES_WRITE}),
    "csk_jobs_only": tenant_key({Scope.WORKFLOWS_READ, Scope.WORKFLOWS_WRITE}),
    "csk_admin": Principal(
        kind=PrincipalKind.USER,
        subject="user:admin",
        tenant_id="admin",
        scopes=frozenset({Scope.ADMIN}),
    ),
    "csk_service": Principal(
        kind=PrincipalKind.SERVICE,
        subject="service:executor",
        tenant_id="",
        scopes=frozenset({SERVICE_SCOPE}),
    ),
}


class FakeVerifier:
    """The auth service's verdict on credentials: those in `principals`."""

    def __init__(self, principals: dict[str, Principal]) -> None:
        self.principals = principals

    async def verify(self, credential: str) -> Principal:
        try:
            return self.principals[credential]
        except KeyError:
            raise Unauthenticated("unknown") from None


@pytest.fixture
async def address(isolated) -> AsyncIterator[str]:
    async with serve_grpc(
        service=SERVICE_NAME,
        add_servicers=lambda server: pb_grpc.add_StorageServiceServicer_to_server(
            StorageServicer(
                isolated.uploads, isolated.reads, isolated.deletion, isolated.lookups
            ),
            server,
        ),
        registry=CollectorRegistry(),
        metrics_prefix="storage_test",
        address="127.0.0.1:0",
        verifier=FakeVerifier(PRINCIPALS),
    ) as server:
        yield f"127.0.0.1:{server.port}"


@asynccontextmanager
async def storage(
    address: str, credential: str | None
) -> AsyncIterator[pb_grpc.StorageServiceAsyncStub]:
    async with insecure_channel(address, credential) as channel:
        yield pb_grpc.StorageServiceStub(channel)


async def code_of(call) -> grpc.StatusCode:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    return caught.value.code()


@pytest.fixture
async def file_id(isolated) -> str:
    upload = await isolated.uploads.create_upload(
        UploadRequest(
            tenant_id=TENANT,
            purpose=FilePurpose.INPUT,
            filename="cat.png",
            content_type="image/png",
            size=3,
            job_id=None,
            node_id=None,
            index=None,
            sha256=None,
            ttl_seconds=None,
        )
    )
    return str(upload.file.id)


def input_upload(tenant_id: str = TENANT) -> pb.CreateUploadRequest:
    return pb.CreateUploadRequest(
        tenant_id=tenant_id,
        purpose=pb.FILE_PURPOSE_INPUT,
        filename="cat.png",
        content_type="image/png",
        size=3,
    )


def output_upload(tenant_id: str = TENANT) -> pb.CreateUploadRequest:
    return pb.CreateUploadRequest(
        tenant_id=tenant_id,
        purpose=pb.FILE_PURPOSE_OUTPUT,
        filename="out.png",
        content_type="image/png",
        size=3,
        job_id="job-1",
        attempt=1,
        node_id="9",
        index=0,
    )


@pytest.mark.parametrize("credential", [None, "csk_unknown"])
async def test_a_call_without_a_known_credential_is_unauthenticated(
    address, file_id, credential
) -> None:
    async with storage(address, credential) as client:
        request = pb.GetFileRequest(tenant_id=TENANT, file_id=file_id)
        assert await code_of(client.GetFile(request)) == (
            grpc.StatusCode.UNAUTHENTICATED
        )


async def test_health_needs_no_credential(address) -> None:
    async with insecure_channel(address) as channel:
        answer = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=SERVICE_NAME)
        )
    assert answer.status == health_pb2.HealthCheckResponse.SERVING


async def test_a_tenant_reads_its_own_files(address, file_id) -> None:
    async with storage(address, "csk_reader") as client:
        named = await client.GetFile(
            pb.GetFileRequest(tenant_id=TENANT, file_id=file_id)
        )
        # A tenant's credential needs no tenant_id: it is the credential's.
        unnamed = await client.GetFile(pb.GetFileRequest(file_id=file_id))
        listed = await client.ListFiles(pb.ListFilesRequest())
    assert named.id == unnamed.id == file_id
    assert [info.id for info in listed.files] == [file_id]


async def test_a_tenant_naming_another_tenant_is_refused(address, file_id) -> None:
    async with storage(address, "csk_writer") as client:
        calls = [
            client.GetFile(pb.GetFileRequest(tenant_id=OTHER, file_id=file_id)),
            client.ListFiles(pb.ListFilesRequest(tenant_id=OTHER)),
            client.CreateUpload(input_upload(OTHER)),
            client.DeleteFile(pb.DeleteFileRequest(tenant_id=OTHER, file_id=file_id)),
        ]
        for call in calls:
            assert await code_of(call) == grpc.StatusCode.PERMISSION_DENIED


async def test_reading_needs_files_read(address, file_id) -> None:
    async with storage(address, "csk_jobs_only") as client:
        calls = [
            client.GetFile(pb.GetFileRequest(tenant_id=TENANT, file_id=file_id)),
            client.GetDownloadUrl(
                pb.GetDownloadUrlRequest(tenant_id=TENANT, file_id=file_id)
            ),
            client.GetDownloadUrls(
                pb.GetDownloadUrlsRequest(tenant_id=TENANT, file_ids=[file_id])
            ),
            client.ListFiles(pb.ListFilesRequest(tenant_id=TENANT)),
        ]
        for call in calls:
            assert await code_of(call) == grpc.StatusCode.PERMISSION_DENIED


async def test_writing_needs_files_write(address, file_id, isolated) -> None:
    async with storage(address, "csk_reader") as client:
        calls = [
            client.CreateUpload(input_upload()),
            client.CompleteUpload(
                pb.CompleteUploadRequest(tenant_id=TENANT, file_id=file_id)
            ),
            client.DeleteFile(pb.DeleteFileRequest(tenant_id=TENANT, file_id=file_id)),
        ]
        for call in calls:
            assert await code_of(call) == grpc.StatusCode.PERMISSION_DENIED
    assert (await isolated.reads.get_file(TENANT, file_id)).state == "pending"

    async with storage(address, "csk_writer") as client:
        created = await client.CreateUpload(input_upload())
        await client.DeleteFile(pb.DeleteFileRequest(file_id=file_id))
    assert created.file.tenant_id == TENANT


async def test_only_our_services_register_job_outputs(address) -> None:
    async with storage(address, "csk_writer") as client:
        refused = await code_of(client.CreateUpload(output_upload()))
    assert refused == grpc.StatusCode.PERMISSION_DENIED

    async with storage(address, "csk_service") as client:
        created = await client.CreateUpload(output_upload())
    assert (created.file.tenant_id, created.file.job_id) == (TENANT, "job-1")


async def test_usage_is_for_administrators_and_our_services(address, file_id) -> None:
    request = pb.GetStorageUsageRequest(tenant_ids=[TENANT])
    async with storage(address, "csk_writer") as client:
        assert await code_of(client.GetUsage(request)) == (
            grpc.StatusCode.PERMISSION_DENIED
        )
    for credential in ("csk_admin", "csk_service"):
        async with storage(address, credential) as client:
            answer = await client.GetUsage(request)
        assert [entry.tenant_id for entry in answer.tenants] == [TENANT]


async def test_the_running_service_checks_every_call_but_health(
    isolated, test_topics
) -> None:
    # As deployed, with an auth service nobody answers at.
    settings = isolated.settings.model_copy(
        update={"require_credentials": True, "auth_grpc_target": "127.0.0.1:1"}
    )
    await test_topics.create(settings.finished_topic)
    async with running(settings, store=isolated.store) as app:
        address = f"127.0.0.1:{app.grpc_port}"
        request = pb.ListFilesRequest(tenant_id=TENANT)
        async with storage(address, None) as client:
            unauthenticated = await code_of(client.ListFiles(request))
        async with storage(address, "csk_reader") as client:
            unchecked = await code_of(client.ListFiles(request))
        async with insecure_channel(address) as channel:
            health = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=SERVICE_NAME)
            )
    assert unauthenticated == grpc.StatusCode.UNAUTHENTICATED
    # A credential that cannot be checked now is worth a retry, not a refusal.
    assert unchecked == grpc.StatusCode.UNAVAILABLE
    assert health.status == health_pb2.HealthCheckResponse.SERVING
