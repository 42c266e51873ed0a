"""StorageService over gRPC: check the caller, decode, call the file services,
encode."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, TypeVar

import grpc
import structlog
from google.protobuf.empty_pb2 import Empty
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from comfyserve.contracts.pb.storage.v1 import storage_pb2 as pb
from comfyserve.contracts.pb.storage.v1 import storage_pb2_grpc as pb_grpc
from comfyserve.contracts.scopes import Scope
from comfyserve.runtime.grpc_auth import require_admin, require_service, tenant_of_call
from comfyserve.storage.files.deletion import DeletionService
from comfyserve.storage.files.lookups import LookupService
from comfyserve.storage.files.models import (
    DownloadLink,
    FilePurpose,
    FileState,
    StoredFile,
    UploadRequest,
)
from comfyserve.storage.files.reads import ReadService
from comfyserve.storage.files.uploads import UploadService

log = structlog.get_logger(__name__)

Req = TypeVar("Req", bound=Message)
Resp = TypeVar("Resp", bound=Message)
Context = grpc.aio.ServicerContext[Any, Any]
Method = Callable[["StorageServicer", Req, Context], Awaitable[Resp]]

_PURPOSES = {
    pb.FILE_PURPOSE_INPUT: FilePurpose.INPUT,
    pb.FILE_PURPOSE_OUTPUT: FilePurpose.OUTPUT,
}
_PURPOSE_VALUES = {purpose: value for value, purpose in _PURPOSES.items()}
_STATES = {
    FileState.PENDING: pb.FILE_STATE_PENDING,
    FileState.READY: pb.FILE_STATE_READY,
}


class StorageServicer(pb_grpc.StorageServiceServicer):
    def __init__(
        self,
        uploads: UploadService,
        reads: ReadService,
        deletion: DeletionService,
        lookups: LookupService,
    ) -> None:
        self.uploads = uploads
        self.reads = reads
        self.deletion = deletion
        self.lookups = lookups

    async def CreateUpload(
        self, request: pb.CreateUploadRequest, context: Context
    ) -> pb.CreateUploadResponse:
        tenant_id = tenant_of_call(request.tenant_id, Scope.FILES_WRITE)
        if request.purpose == pb.FILE_PURPOSE_OUTPUT:
            # A job's outputs are written by the executor running its attempt;
            # a tenant writing one could replace what its job produced.
            require_service()
        upload = await self.uploads.create_upload(
            UploadRequest(
                tenant_id=tenant_id,
                purpose=_PURPOSES.get(request.purpose),
                filename=request.filename,
                content_type=request.content_type,
                size=request.size,
                job_id=request.job_id if request.HasField("job_id") else None,
                node_id=request.node_id if request.HasField("node_id") else None,
                index=request.index if request.HasField("index") else None,
                sha256=request.sha256 if request.HasField("sha256") else None,
                ttl_seconds=(
                    request.ttl_seconds if request.HasField("ttl_seconds") else None
                ),
                attempt=request.attempt if request.HasField("attempt") else None,
                blake3=request.blake3 if request.HasField("blake3") else None,
                folder=request.folder if request.HasField("folder") else None,
                path=request.path if request.HasField("path") else None,
                width=request.width if request.HasField("width") else None,
                height=request.height if request.HasField("height") else None,
            )
        )
        return pb.CreateUploadResponse(
            file=file_info(upload.file),
            upload_url=upload.url,
            url_expires_at=_timestamp(upload.url_expires_at),
            upload_headers=upload.headers,
        )

    async def CompleteUpload(
        self, request: pb.CompleteUploadRequest, context: Context
    ) -> pb.FileInfo:
        row = await self.uploads.complete_upload(
            tenant_of_call(request.tenant_id, Scope.FILES_WRITE),
            request.file_id,
            width=request.width if request.HasField("width") else None,
            height=request.height if request.HasField("height") else None,
        )
        return file_info(row)

    async def GetDownloadUrl(
        self, request: pb.GetDownloadUrlRequest, context: Context
    ) -> pb.DownloadUrl:
        link = await self.reads.download_url(
            tenant_of_call(request.tenant_id, Scope.FILES_READ),
            request.file_id,
            (
                request.expires_in_seconds
                if request.HasField("expires_in_seconds")
                else None
            ),
        )
        return _download_url(link)

    async def GetDownloadUrls(
        self, request: pb.GetDownloadUrlsRequest, context: Context
    ) -> pb.GetDownloadUrlsResponse:
        links = await self.reads.download_urls(
            tenant_of_call(request.tenant_id, Scope.FILES_READ),
            list(request.file_ids),
            (
                request.expires_in_seconds
                if request.HasField("expires_in_seconds")
                else None
            ),
        )
        return pb.GetDownloadUrlsResponse(urls=[_download_url(link) for link in links])

    async def GetFile(
        self, request: pb.GetFileRequest, context: Context
    ) -> pb.FileInfo:
        tenant_id = tenant_of_call(request.tenant_id, Scope.FILES_READ)
        return file_info(await self.reads.get_file(tenant_id, request.file_id))

    async def DeleteFile(
        self, request: pb.DeleteFileRequest, context: Context
    ) -> Empty:
        tenant_id = tenant_of_call(request.tenant_id, Scope.FILES_WRITE)
        await self.deletion.delete_file(tenant_id, request.file_id)
        return Empty()

    async def ListFiles(
        self, request: pb.ListFilesRequest, context: Context
    ) -> pb.ListFilesResponse:
        page = await self.reads.list_files(
            tenant_of_call(request.tenant_id, Scope.FILES_READ),
            job_id=request.job_id if request.HasField("job_id") else None,
            page_size=request.page_size,
            cursor=request.cursor,
        )
        return pb.ListFilesResponse(
            files=[file_info(row) for row in page.files],
            next_cursor=page.next_cursor,
        )

    async def GetUsage(
        self, request: pb.GetStorageUsageRequest, context: Context
    ) -> pb.GetStorageUsageResponse:
        require_admin()
        found = await self.reads.usage(list(request.tenant_ids))
        return pb.GetStorageUsageResponse(
            tenants=[
                pb.TenantStorage(
                    tenant_id=entry.tenant_id, bytes=entry.bytes, files=entry.files
                )
                for entry in found
            ]
        )

    async def FindFileByHash(
        self, request: pb.FindFileByHashRequest, context: Context
    ) -> pb.FileInfo:
        tenant_id = tenant_of_call(request.tenant_id, Scope.FILES_READ)
        return file_info(await self.lookups.by_hash(tenant_id, request.blake3))

    async def CreateFileFromHash(
        self, request: pb.CreateFileFromHashRequest, context: Context
    ) -> pb.CreateFileFromHashResponse:
        minted = await self.lookups.mint(
            tenant_of_call(request.tenant_id, Scope.FILES_WRITE),
            request.blake3,
            folder=request.folder if request.HasField("folder") else None,
            path=request.path if request.HasField("path") else None,
            ttl_seconds=(
                request.ttl_seconds if request.HasField("ttl_seconds") else None
            ),
        )
        return pb.CreateFileFromHashResponse(
            file=file_info(minted.file), created_new=minted.created_new
        )

    async def FindNamedFile(
        self, request: pb.FindNamedFileRequest, context: Context
    ) -> pb.FileInfo:
        tenant_id = tenant_of_call(request.tenant_id, Scope.FILES_READ)
        return file_info(
            await self.lookups.named(tenant_id, request.folder, request.path)
        )


def file_info(row: StoredFile) -> pb.FileInfo:
    info = pb.FileInfo(
        id=str(row.id),
        tenant_id=row.tenant_id,
        purpose=_PURPOSE_VALUES[FilePurpose(row.purpose)],
        filename=row.filename,
        content_type=row.content_type,
        size=row.size,
        sha256=row.sha256 or "",
        blake3=row.blake3 or "",
        folder=row.folder or "",
        path=row.path or "",
        bucket=row.bucket,
        key=row.key,
        job_id=row.job_id,
        node_id=row.node_id,
        index=row.index,
        attempt=row.attempt,
        width=row.width,
        height=row.height,
        state=_STATES[FileState(row.state)],
        created_at=_timestamp(row.created_at),
    )
    if row.expires_at is not None:
        info.expires_at.CopyFrom(_timestamp(row.expires_at))
    return info


def _download_url(link: DownloadLink) -> pb.DownloadUrl:
    return pb.DownloadUrl(
        file_id=str(link.file_id),
        url=link.url,
        expires_at=_timestamp(link.expires_at),
    )


def _timestamp(value: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(value)
    return stamp
