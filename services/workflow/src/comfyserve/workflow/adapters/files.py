"""Looking up input files: the storage service, behind a port tests can fake."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import grpc

from comfyserve.contracts.pb.storage.v1 import storage_pb2, storage_pb2_grpc
from comfyserve.workflow.errors import StorageUnavailableError


@dataclass(frozen=True, slots=True)
class StoredFile:
    file_id: str
    filename: str
    bucket: str
    key: str
    content_type: str
    size: int
    sha256: str | None
    ready: bool


class FileLookup(Protocol):
    async def get_file(self, tenant_id: str, file_id: str) -> StoredFile | None:
        """The tenant's file, or None when it has no such file."""
        ...


class StorageFileLookup:
    """`StorageService.GetFile` over gRPC; the channel belongs to the caller."""

    def __init__(self, channel: grpc.aio.Channel, timeout_seconds: float) -> None:
        self._stub = storage_pb2_grpc.StorageServiceStub(channel)
        self._timeout = timeout_seconds

    async def get_file(self, tenant_id: str, file_id: str) -> StoredFile | None:
        request = storage_pb2.GetFileRequest(tenant_id=tenant_id, file_id=file_id)
        try:
            info = await self._stub.GetFile(request, timeout=self._timeout)
        except grpc.aio.AioRpcError as error:
            if error.code() in (
                grpc.StatusCode.NOT_FOUND,
                grpc.StatusCode.INVALID_ARGUMENT,
            ):
                return None
            raise StorageUnavailableError(error.code().name) from error
        return StoredFile(
            file_id=info.id,
            filename=info.filename,
            bucket=info.bucket,
            key=info.key,
            content_type=info.content_type,
            size=info.size,
            sha256=info.sha256 or None,
            ready=info.state == storage_pb2.FILE_STATE_READY,
        )
