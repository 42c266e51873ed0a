"""Uploads through presigned PUT URLs, and file records from StorageService."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import anyio.to_thread
import grpc
import httpx
import structlog
from starlette.datastructures import UploadFile

from comfyserve.contracts.pb.storage.v1 import storage_pb2 as st
from comfyserve.gateway.adapters.storage import StorageClient
from comfyserve.gateway.bodies import NUL
from comfyserve.gateway.errors import (
    InvalidRequestError,
    NotFoundError,
    PayloadTooLargeError,
    UploadFailedError,
)
from comfyserve.gateway.files.content import (
    CHUNK_BYTES,
    Inspected,
    check_content,
    content_type_for,
    inspect_upload,
)
from comfyserve.gateway.files.models import FileLinks, FileMetadata
from comfyserve.gateway.links import Links
from comfyserve.gateway.protos import optional_int, optional_time

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class InspectedUpload:
    filename: str
    media_type: str
    content: Inspected


@dataclass(frozen=True, slots=True)
class Placement:
    """Where a client file is named: a native folder and a path inside it."""

    folder: str
    path: str
    ttl_seconds: int | None = None


def parse_file_id(file_id: str) -> str:
    try:
        return str(uuid.UUID(file_id))
    except ValueError:
        raise NotFoundError("No such file") from None


async def _chunks(upload: UploadFile) -> AsyncIterator[bytes]:
    await upload.seek(0)
    while chunk := await upload.read(CHUNK_BYTES):
        yield chunk


class FilesService:
    def __init__(
        self,
        storage: StorageClient,
        http: httpx.AsyncClient,
        tenant_id: str,
        links: Links,
        max_upload_bytes: int,
    ) -> None:
        self._storage = storage
        self._http = http
        self._tenant_id = tenant_id
        self._links = links
        self._max_upload_bytes = max_upload_bytes

    def _metadata(self, info: st.FileInfo) -> FileMetadata:
        url = self._links.file(info.id)
        return FileMetadata(
            id=info.id,
            filename=info.filename,
            content_type=info.content_type,
            size=info.size,
            sha256=info.sha256 or None,
            width=optional_int(info, "width"),
            height=optional_int(info, "height"),
            created_at=optional_time(info, "created_at"),
            expires_at=optional_time(info, "expires_at"),
            links=FileLinks(self=url, content=f"{url}/content"),
        )

    async def upload(
        self, upload: UploadFile, content_type: str | None
    ) -> FileMetadata:
        """Stores a spooled multipart upload: record, PUT the bytes, complete."""
        inspected = await self.inspect(upload, content_type)
        return self._metadata(await self.store(upload, inspected))

    async def inspect(
        self, upload: UploadFile, content_type: str | None
    ) -> InspectedUpload:
        """The upload's name, type, size and hashes, refused when over the
        limit, empty, or not the image type it claims."""
        filename = upload.filename or "upload"
        if NUL in filename:
            raise InvalidRequestError(
                "file", "its name must not contain a NUL character"
            )
        media_type = content_type_for(filename, upload.content_type, content_type)
        inspected = await anyio.to_thread.run_sync(
            inspect_upload, upload.file, media_type.startswith("image/")
        )
        if inspected.size > self._max_upload_bytes:
            raise PayloadTooLargeError(self._max_upload_bytes)
        check_content(media_type, inspected)
        return InspectedUpload(filename, media_type, inspected)

    async def store(
        self,
        upload: UploadFile,
        inspected: InspectedUpload,
        placement: Placement | None = None,
    ) -> st.FileInfo:
        """Records the inspected upload as an input file, PUTs its bytes and
        completes it; `placement` names it in a native folder."""
        request = st.CreateUploadRequest(
            tenant_id=self._tenant_id,
            purpose=st.FILE_PURPOSE_INPUT,
            filename=inspected.filename,
            content_type=inspected.media_type,
            size=inspected.content.size,
            sha256=inspected.content.sha256,
            blake3=inspected.content.blake3,
        )
        if placement is not None:
            request.folder = placement.folder
            request.path = placement.path
            if placement.ttl_seconds is not None:
                request.ttl_seconds = placement.ttl_seconds
        with self._upload_size_checked():
            created = await self._storage.create_upload(request)
        await self._put(created, upload, inspected.media_type, request.size)
        completion = st.CompleteUploadRequest(
            tenant_id=self._tenant_id, file_id=created.file.id
        )
        image = inspected.content.image
        if image is not None and image.width is not None and image.height is not None:
            completion.width = image.width
            completion.height = image.height
        with self._upload_size_checked():
            info = await self._storage.complete_upload(completion)
        log.info("gateway.file.uploaded", file_id=info.id, size=info.size)
        return info

    @contextmanager
    def _upload_size_checked(self) -> Iterator[None]:
        """Storage's refusal of a size over its own limit, as our 413.

        Storage checks the declared size at CreateUpload and the stored one at
        CompleteUpload (RESOURCE_EXHAUSTED); the limit it holds is configured
        like ours, so ours is the one to name.
        """
        try:
            yield
        except grpc.aio.AioRpcError as error:
            if error.code() != grpc.StatusCode.RESOURCE_EXHAUSTED:
                raise
            raise PayloadTooLargeError(self._max_upload_bytes) from None

    async def _put(
        self,
        created: st.CreateUploadResponse,
        upload: UploadFile,
        media_type: str,
        size: int,
    ) -> None:
        headers = httpx.Headers({"Content-Type": media_type})
        # The presigned signature covers these, so they win over our defaults.
        headers.update(dict(created.upload_headers))
        # A known length keeps the PUT out of chunked encoding, which S3
        # rejects for presigned uploads.
        headers["Content-Length"] = str(size)
        try:
            response = await self._http.put(
                created.upload_url, content=_chunks(upload), headers=headers
            )
        except httpx.HTTPError as error:
            log.warning(
                "gateway.file.put_failed",
                file_id=created.file.id,
                error=type(error).__name__,
            )
            raise UploadFailedError("The object store could not be reached") from None
        if response.status_code >= 300:
            log.warning(
                "gateway.file.put_refused",
                file_id=created.file.id,
                status=response.status_code,
            )
            raise UploadFailedError("The object store refused the upload")

    async def get(self, file_id: str) -> FileMetadata:
        info = await self._storage.get_file(
            st.GetFileRequest(tenant_id=self._tenant_id, file_id=parse_file_id(file_id))
        )
        return self._metadata(info)

    async def download_url(self, file_id: str) -> str:
        url = await self._storage.get_download_url(
            st.GetDownloadUrlRequest(
                tenant_id=self._tenant_id, file_id=parse_file_id(file_id)
            )
        )
        return url.url
