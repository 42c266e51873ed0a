"""Comfy API v2 assets (API.md §A.7): uploads addressed by BLAKE3 with per-
tenant dedup, files minted over a known hash, and each asset's record and bytes.

An asset is a storage file of the caller's tenant; a job's output is one too,
so an output's id works here. Another tenant's hash or id answers exactly like
an unknown one.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import grpc
import httpx
from fastapi import Response
from starlette.datastructures import UploadFile

from comfyserve.contracts.pb.storage.v1 import storage_pb2 as st
from comfyserve.gateway.adapters.storage import StorageClient
from comfyserve.gateway.errors import (
    ConflictError,
    InvalidRequestError,
    NotFoundError,
)
from comfyserve.gateway.files.service import FilesService, Placement
from comfyserve.gateway.files.streaming import ObjectGone, stream_file
from comfyserve.gateway.links import Links
from comfyserve.gateway.protos import optional_time
from comfyserve.gateway.v2.models import Asset

HASH = re.compile(r"^blake3:[0-9a-f]{64}$")
MIN_EXPIRES_IN = 60
MAX_EXPIRES_IN = 604800
# A content URL is our own route; it lasts while the file does, and a file
# without an expiry is given a day, as the reference proxy does.
_DEFAULT_URL_LIFETIME = timedelta(days=1)


class HashMismatchError(ConflictError):
    code = "hash_mismatch"

    def __init__(self) -> None:
        super().__init__("The uploaded bytes do not match expected_hash")


class BlobNotFoundError(NotFoundError):
    code = "blob_not_found"

    def __init__(self) -> None:
        super().__init__("No blob with this hash")


class OutputUnavailableError(NotFoundError):
    code = "output_unavailable"

    def __init__(self) -> None:
        super().__init__("The asset exists but its bytes are gone")


def normal_hash(raw: str) -> str | None:
    """`blake3:<hex>` in lower case, None when `raw` is not such a hash."""
    value = raw.strip().lower()
    return value if HASH.fullmatch(value) else None


def input_path(file_path: str) -> str:
    """The input path a v2 `file_path` names (§A.7.5): `photo.png` and
    `input/sub/x.png` are inputs; models, absolute paths and `..` are refused."""
    path = file_path.strip()
    if not path or path.startswith("/") or "\\" in path:
        raise InvalidRequestError("file_path", "must be a relative path")
    segments = path.split("/")
    if any(segment in ("", ".", "..") for segment in segments):
        raise InvalidRequestError("file_path", "must not hold '..' or empty segments")
    if segments[0] == "input" and len(segments) > 1:
        segments = segments[1:]
    elif segments[0] == "models":
        raise InvalidRequestError("file_path", "model files cannot be uploaded here")
    return "/".join(segments)


def expiry(expires_in: int | None) -> int | None:
    if expires_in is not None and not MIN_EXPIRES_IN <= expires_in <= MAX_EXPIRES_IN:
        raise InvalidRequestError(
            "expires_in", f"must be {MIN_EXPIRES_IN} to {MAX_EXPIRES_IN} seconds"
        )
    return expires_in


@dataclass(frozen=True, slots=True)
class Committed:
    asset: Asset
    created_new: bool


class AssetsService:
    def __init__(
        self,
        storage: StorageClient,
        http: httpx.AsyncClient,
        files: FilesService,
        tenant_id: str,
        links: Links,
    ) -> None:
        self._storage = storage
        self._http = http
        self._files = files
        self._tenant_id = tenant_id
        self._links = links

    def asset(self, info: st.FileInfo, created_new: bool | None = None) -> Asset:
        created_at = optional_time(info, "created_at") or datetime.now(UTC)
        expires_at = optional_time(info, "expires_at")
        return Asset(
            id=info.id,
            hash=info.blake3 or None,
            size_bytes=info.size,
            content_type=info.content_type,
            created_at=created_at,
            url=self._links.url(f"/api/v2/assets/{info.id}/content"),
            url_expires_at=expires_at or datetime.now(UTC) + _DEFAULT_URL_LIFETIME,
            file_path=info.path or info.filename,
            created_new=created_new,
            expires_at=expires_at,
            job_id=info.job_id if info.HasField("job_id") else None,
        )

    async def upload(
        self,
        upload: UploadFile,
        *,
        content_type: str | None,
        file_path: str,
        expected_hash: str | None,
        expires_in: int | None,
    ) -> Committed:
        """Stores the bytes, or mints over the tenant's blob of the same hash."""
        placement = Placement("input", input_path(file_path), expiry(expires_in))
        inspected = await self._files.inspect(upload, content_type)
        actual = inspected.content.blake3
        if expected_hash is not None and expected_hash.strip().lower() != actual:
            raise HashMismatchError
        if await self.has_blob(actual):
            minted = await self._mint(actual, placement)
            if minted is not None:
                return Committed(self.asset(minted.file, False), False)
        info = await self._files.store(upload, inspected, placement)
        return Committed(self.asset(info, True), True)

    async def has_blob(self, digest: str) -> bool:
        try:
            await self._storage.find_file_by_hash(
                st.FindFileByHashRequest(tenant_id=self._tenant_id, blake3=digest)
            )
        except grpc.aio.AioRpcError as error:
            if error.code() == grpc.StatusCode.NOT_FOUND:
                return False
            raise
        return True

    async def from_hash(
        self, raw_hash: str, file_path: str | None, expires_in: int | None
    ) -> Committed:
        digest = normal_hash(raw_hash)
        if digest is None:
            raise BlobNotFoundError
        path = input_path(file_path) if file_path else None
        minted = await self._mint(
            digest, Placement("input", path or "", expiry(expires_in))
        )
        if minted is None:
            raise BlobNotFoundError
        return Committed(
            self.asset(minted.file, minted.created_new), minted.created_new
        )

    async def _mint(
        self, digest: str, placement: Placement
    ) -> st.CreateFileFromHashResponse | None:
        request = st.CreateFileFromHashRequest(
            tenant_id=self._tenant_id, blake3=digest, folder=placement.folder
        )
        if placement.path:
            request.path = placement.path
        if placement.ttl_seconds is not None:
            request.ttl_seconds = placement.ttl_seconds
        try:
            return await self._storage.create_file_from_hash(request)
        except grpc.aio.AioRpcError as error:
            # The blob went between the lookup and the mint: a miss.
            if error.code() == grpc.StatusCode.NOT_FOUND:
                return None
            raise

    async def get(self, asset_id: str) -> st.FileInfo:
        try:
            file_id = str(uuid.UUID(asset_id))
        except ValueError:
            raise NotFoundError("No such asset") from None
        return await self._storage.get_file(
            st.GetFileRequest(tenant_id=self._tenant_id, file_id=file_id)
        )

    async def content(self, asset_id: str, range_header: str | None) -> Response:
        info = await self.get(asset_id)
        if info.state != st.FILE_STATE_READY:
            raise OutputUnavailableError
        try:
            return await stream_file(
                self._storage, self._http, info, range_header, headers={}
            )
        except ObjectGone:
            raise OutputUnavailableError from None

    async def delete(self, asset_id: str) -> None:
        info = await self.get(asset_id)
        await self._storage.delete_file(
            st.DeleteFileRequest(tenant_id=self._tenant_id, file_id=info.id)
        )
