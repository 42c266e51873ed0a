"""Looking up input files by id, by native name, or as an earlier job's output:
the storage service, behind a port tests can fake."""

from __future__ import annotations

from collections.abc import Awaitable
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

    async def find_named(
        self, tenant_id: str, folder: str, path: str
    ) -> StoredFile | None:
        """The tenant's newest ready upload at `folder`/`path`, else None."""
        ...

    async def find_output(
        self, tenant_id: str, job_id: str, filename: str
    ) -> StoredFile | None:
        """The tenant's ready output of that job and name (its newest attempt's),
        else None."""
        ...


class StorageFileLookup:
    """`StorageService.GetFile` over gRPC; the channel belongs to the caller."""

    def __init__(self, channel: grpc.aio.Channel, timeout_seconds: float) -> None:
        self._stub = storage_pb2_grpc.StorageServiceStub(channel)
        self._timeout = timeout_seconds

    async def get_file(self, tenant_id: str, file_id: str) -> StoredFile | None:
        request = storage_pb2.GetFileRequest(tenant_id=tenant_id, file_id=file_id)
        return await self._found(self._stub.GetFile(request, timeout=self._timeout))

    async def find_named(
        self, tenant_id: str, folder: str, path: str
    ) -> StoredFile | None:
        request = storage_pb2.FindNamedFileRequest(
            tenant_id=tenant_id, folder=folder, path=path
        )
        return await self._found(
            self._stub.FindNamedFile(request, timeout=self._timeout)
        )

    async def find_output(
        self, tenant_id: str, job_id: str, filename: str
    ) -> StoredFile | None:
        best: storage_pb2.FileInfo | None = None
        cursor = ""
        while True:
            request = storage_pb2.ListFilesRequest(
                tenant_id=tenant_id, job_id=job_id, cursor=cursor
            )
            try:
                page = await self._stub.ListFiles(request, timeout=self._timeout)
            except grpc.aio.AioRpcError as error:
                if error.code() == grpc.StatusCode.INVALID_ARGUMENT:
                    return None
                raise StorageUnavailableError(error.code().name) from error
            for info in page.files:
                if (
                    info.purpose == storage_pb2.FILE_PURPOSE_OUTPUT
                    and info.state == storage_pb2.FILE_STATE_READY
                    and info.filename == filename
                    and (best is None or info.attempt > best.attempt)
                ):
                    best = info
            if not page.next_cursor:
                return None if best is None else _stored(best)
            cursor = page.next_cursor

    async def _found(self, call: Awaitable[storage_pb2.FileInfo]) -> StoredFile | None:
        try:
            info = await call
        except grpc.aio.AioRpcError as error:
            if error.code() in (
                grpc.StatusCode.NOT_FOUND,
                grpc.StatusCode.INVALID_ARGUMENT,
            ):
                return None
            raise StorageUnavailableError(error.code().name) from error
        return _stored(info)


def _stored(info: storage_pb2.FileInfo) -> StoredFile:
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
