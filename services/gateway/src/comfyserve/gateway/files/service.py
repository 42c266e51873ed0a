"""Uploads through presigned PUT URLs, and file records from StorageService."""

from __future__ import annotations

import functools
import hashlib
import mimetypes
import re
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
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
    ContentTypeMismatchError,
    EmptyFileError,
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


# Other names for the formats Pillow reads, as browsers and `mimetypes` give
# them, each mapped to Pillow's own.
_IMAGE_TYPE_ALIASES = {
    "image/jpg": "image/jpeg",
    "image/pjpeg": "image/jpeg",
    # Pillow's name for the multi-picture JPEGs that cameras write.
    "image/mpo": "image/jpeg",
    "image/x-png": "image/png",
    "image/apng": "image/png",
    "image/x-ms-bmp": "image/bmp",
    "image/vnd.microsoft.icon": "image/x-icon",
    "image/jpx": "image/jp2",
    "image/x-portable-bitmap": "image/x-portable-anymap",
    "image/x-portable-graymap": "image/x-portable-anymap",
    "image/x-portable-pixmap": "image/x-portable-anymap",
    "image/vnd.zbrush.pcx": "image/x-pcx",
    "image/x-rgb": "image/sgi",
    "image/x-xbitmap": "image/xbm",
    "image/x-xpixmap": "image/xpm",
}


@dataclass(frozen=True, slots=True)
class _Identified:
    """What Pillow makes of an upload's header."""

    # Pillow's media type of the format, else the format's name; None when the
    # image has too many pixels for Pillow to open it at all.
    format_type: str | None
    width: int | None
    height: int | None


@dataclass(frozen=True, slots=True)
class _Inspected:
    size: int
    sha256: str
    # Only for declared image types; None when the bytes are no image.
    image: _Identified | None


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


def _identify(file: BinaryIO) -> _Identified | None:
    # Image.open reads only the header; nothing is decoded.
    try:
        with Image.open(file) as image:
            width, height = image.size
            return _Identified(
                image.get_format_mimetype() or image.format, width, height
            )
    except Image.DecompressionBombError:
        return _Identified(None, None, None)
    except (UnidentifiedImageError, OSError, ValueError):
        return None


def _inspect(file: BinaryIO, is_image: bool) -> _Inspected:
    """Size, SHA-256 and (for images) Pillow's reading of a spooled upload."""
    digest = hashlib.sha256()
    size = 0
    file.seek(0)
    while chunk := file.read(CHUNK_BYTES):
        digest.update(chunk)
        size += len(chunk)
    image = None
    if is_image and size:
        file.seek(0)
        image = _identify(file)
    file.seek(0)
    return _Inspected(size=size, sha256=digest.hexdigest(), image=image)


def _essence(media_type: str) -> str:
    """The type without parameters, lower case, under Pillow's name."""
    essence = media_type.split(";", 1)[0].strip().lower()
    return _IMAGE_TYPE_ALIASES.get(essence, essence)


@functools.cache
def _pillow_image_types() -> frozenset[str]:
    """The image types Pillow identifies, so an upload's claim can be checked."""
    Image.init()
    return frozenset(
        _essence(value) for value in Image.MIME.values() if value.startswith("image/")
    )


def _check_content(media_type: str, inspected: _Inspected) -> None:
    """Refuses empty files, and images whose bytes are not the declared type.

    Types Pillow cannot identify (SVG, HEIC) and non-image types pass as
    declared: no small, maintained library judges those without false refusals.
    """
    if inspected.size == 0:
        raise EmptyFileError
    declared = _essence(media_type)
    if declared not in _pillow_image_types():
        return
    image = inspected.image
    if image is None:
        raise ContentTypeMismatchError(media_type, None)
    # Too many pixels to open: an image all the same, as the header said.
    if image.format_type is not None and _essence(image.format_type) != declared:
        raise ContentTypeMismatchError(media_type, image.format_type)


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
        _check_content(media_type, inspected)
        with self._upload_size_checked():
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
        image = inspected.image
        if image is not None and image.width is not None and image.height is not None:
            completion.width = image.width
            completion.height = image.height
        with self._upload_size_checked():
            info = await self._storage.complete_upload(completion)
        log.info("gateway.file.uploaded", file_id=info.id, size=info.size)
        return self._metadata(info)

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
