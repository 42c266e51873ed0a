"""StorageService client; errors travel as `grpc.aio.AioRpcError`."""

from __future__ import annotations

from typing import Protocol

import grpc

from comfyserve.contracts.pb.storage.v1 import storage_pb2 as st
from comfyserve.contracts.pb.storage.v1 import storage_pb2_grpc as st_grpc


class StorageClient(Protocol):
    async def create_upload(
        self, request: st.CreateUploadRequest
    ) -> st.CreateUploadResponse: ...

    async def complete_upload(
        self, request: st.CompleteUploadRequest
    ) -> st.FileInfo: ...

    async def get_download_url(
        self, request: st.GetDownloadUrlRequest
    ) -> st.DownloadUrl: ...

    async def get_download_urls(
        self, request: st.GetDownloadUrlsRequest
    ) -> st.GetDownloadUrlsResponse: ...

    async def get_file(self, request: st.GetFileRequest) -> st.FileInfo: ...

    async def get_storage_usage(
        self, request: st.GetStorageUsageRequest
    ) -> st.GetStorageUsageResponse: ...

    async def delete_file(self, request: st.DeleteFileRequest) -> None: ...

    async def list_files(
        self, request: st.ListFilesRequest
    ) -> st.ListFilesResponse: ...

    async def find_file_by_hash(
        self, request: st.FindFileByHashRequest
    ) -> st.FileInfo: ...

    async def create_file_from_hash(
        self, request: st.CreateFileFromHashRequest
    ) -> st.CreateFileFromHashResponse: ...

    async def find_named_file(
        self, request: st.FindNamedFileRequest
    ) -> st.FileInfo: ...


class GrpcStorageClient:
    def __init__(self, channel: grpc.aio.Channel, timeout_seconds: float) -> None:
        self._stub = st_grpc.StorageServiceStub(channel)
        self._timeout = timeout_seconds

    async def create_upload(
        self, request: st.CreateUploadRequest
    ) -> st.CreateUploadResponse:
        return await self._stub.CreateUpload(request, timeout=self._timeout)

    async def complete_upload(self, request: st.CompleteUploadRequest) -> st.FileInfo:
        return await self._stub.CompleteUpload(request, timeout=self._timeout)

    async def get_download_url(
        self, request: st.GetDownloadUrlRequest
    ) -> st.DownloadUrl:
        return await self._stub.GetDownloadUrl(request, timeout=self._timeout)

    async def get_download_urls(
        self, request: st.GetDownloadUrlsRequest
    ) -> st.GetDownloadUrlsResponse:
        return await self._stub.GetDownloadUrls(request, timeout=self._timeout)

    async def get_file(self, request: st.GetFileRequest) -> st.FileInfo:
        return await self._stub.GetFile(request, timeout=self._timeout)

    async def get_storage_usage(
        self, request: st.GetStorageUsageRequest
    ) -> st.GetStorageUsageResponse:
        return await self._stub.GetUsage(request, timeout=self._timeout)

    async def delete_file(self, request: st.DeleteFileRequest) -> None:
        await self._stub.DeleteFile(request, timeout=self._timeout)

    async def list_files(self, request: st.ListFilesRequest) -> st.ListFilesResponse:
        return await self._stub.ListFiles(request, timeout=self._timeout)

    async def find_file_by_hash(self, request: st.FindFileByHashRequest) -> st.FileInfo:
        return await self._stub.FindFileByHash(request, timeout=self._timeout)

    async def create_file_from_hash(
        self, request: st.CreateFileFromHashRequest
    ) -> st.CreateFileFromHashResponse:
        return await self._stub.CreateFileFromHash(request, timeout=self._timeout)

    async def find_named_file(self, request: st.FindNamedFileRequest) -> st.FileInfo:
        return await self._stub.FindNamedFile(request, timeout=self._timeout)
