"""Uploads through presigned PUT URLs, and file records from StorageService."""

from __future__ import annotations

import hashlib
import mimetypes
import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import BinaryIO

import anyio.to_thread
import grpc
import httpx
import structlog
from PIL import Image, UnidentifiedImageError
from starlette.datastructures import UploadFile

from comfyserve.contracts.pb.storage.v1 import storage_pb2 as st
from comfyserve.gateway.adapters.storage import StorageClient
from comfyserve.gateway.errors import (
    BadRequestError,
    NotFoundError,
    PayloadTooLargeError,
    UploadFailedError,
)
from comfyserve.gateway.files.models import FileLinks, FileMetadata
from comfyserve.gateway.links import Links
from comfyserve.gateway.protos import optional_int, optional_time

CHUNK_BYTES = 1024 * 1024
DEFAULT_CONTENT_TYPE = "application/octet-stream"
_MEDIA_TYPE = re.compile(
    r"^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*$"
)

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class _Inspected:
    size: int
    sha256: str
    width: int | None
    height: int | None


def parse_file_id(file_id: str) -> str:
    try:
        return str(uuid.UUID(file_id))
    except ValueError:
        raise NotFoundError("No such file") from None


def content_type_for(filename: str, declared: str | None, override: str | None) -> str:
    """The override, else the part's own type, else a guess from the name."""
    if override is not None:
        if not _MEDIA_TYPE.fullmatch(override.strip()):
            raise BadRequestError("content_type must be a media type such as image/png")
        return override.strip().lower()
    if declared and declared.split(";", 1)[0].strip().lower() != DEFAULT_CONTENT_TYPE:
        return declared
    guessed, _ = mimetypes.guess_type(filename, strict=False)
    return guessed or declared or DEFAULT_CONTENT_TYPE


def _image_size(file: BinaryIO) -> tuple[int | None, int | None]:
    # Image.open reads only the header; nothing is decoded.
    try:
        with Image.open(file) as image:
            width, height = image.size
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError):
        return None, None
    return width, height


def _inspect(file: BinaryIO, is_image: bool) -> _Inspected:
    """Size, SHA-256 and image dimensions of a spooled upload, chunk by chunk."""
    digest = hashlib.sha256()
    size = 0
    file.seek(0)
    while chunk := file.read(CHUNK_BYTES):
        digest.update(chunk)
        size += len(chunk)
    width, height = (None, None)
    if is_image:
        file.seek(0)
        width, height = _image_size(file)
    file.seek(0)
    return _Inspected(size=size, sha256=digest.hexdigest(), width=width, height=height)


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
        filename = upload.filename or "upload"
        media_type = content_type_for(filename, upload.content_type, content_type)
        inspected = await anyio.to_thread.run_sync(
            _inspect, upload.file, media_type.startswith("image/")
        )
        if inspected.size > self._max_upload_bytes:
            raise PayloadTooLargeError(self._max_upload_bytes)
        created = await self._storage.create_upload(
            st.CreateUploadRequest(
                tenant_id=self._tenant_id,
                purpose=st.FILE_PURPOSE_INPUT,
                filename=filename,
                content_type=media_type,
                size=inspected.size,
                sha256=inspected.sha256,
            )
        )
        await self._put(created, upload, media_type, inspected.size)
        completion = st.CompleteUploadRequest(
            tenant_id=self._tenant_id, file_id=created.file.id
        )
        if inspected.width is not None and inspected.height is not None:
            completion.width = inspected.width
            completion.height = inspected.height
        info = await self._complete(completion)
        log.info("gateway.file.uploaded", file_id=info.id, size=info.size)
        return self._metadata(info)

    async def _complete(self, completion: st.CompleteUploadRequest) -> st.FileInfo:
        try:
            return await self._storage.complete_upload(completion)
        except grpc.aio.AioRpcError as error:
            # Storage checks the stored object against its own upload limit.
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
