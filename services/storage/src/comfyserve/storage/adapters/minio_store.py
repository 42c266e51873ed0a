"""`ObjectStore` over the synchronous minio client, run in worker threads."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable
from datetime import timedelta
from typing import TypeVar

import urllib3
from minio import Minio
from minio.error import MinioException, S3Error

from comfyserve.storage.objects import ObjectStat, ObjectStoreError
from comfyserve.storage.settings import Settings

_MISSING_CODES = frozenset({"NoSuchKey", "NoSuchObject", "NotFound"})
_CHUNK = 1024 * 1024

T = TypeVar("T")


class MinioObjectStore:
    def __init__(self, client: Minio, presigner: Minio, bucket: str) -> None:
        self._client = client
        # Signatures cover the host, so URLs for clients are signed by a client
        # configured with the host they will use. With the region set, presigning
        # needs no request to the store.
        self._presigner = presigner
        self._bucket = bucket

    @classmethod
    def from_settings(cls, settings: Settings) -> MinioObjectStore:
        def client(endpoint: str) -> Minio:
            return Minio(
                endpoint,
                access_key=settings.s3_access_key,
                secret_key=settings.s3_secret_key.get_secret_value(),
                secure=settings.s3_secure,
                region=settings.s3_region,
            )

        return cls(
            client(settings.s3_endpoint),
            client(settings.presign_endpoint),
            settings.s3_bucket,
        )

    @property
    def bucket(self) -> str:
        return self._bucket

    async def ensure_bucket(self) -> None:
        def ensure() -> None:
            if not self._client.bucket_exists(self._bucket):
                self._client.make_bucket(self._bucket)

        await _call(ensure)

    async def presign_put(self, key: str, expires: timedelta) -> str:
        return _sign(
            lambda: self._presigner.presigned_put_object(self._bucket, key, expires)
        )

    async def presign_get(
        self, key: str, expires: timedelta, *, content_type: str, disposition: str
    ) -> str:
        headers: dict[str, str | list[str] | tuple[str]] = {
            "response-content-type": content_type,
            "response-content-disposition": disposition,
        }
        return _sign(
            lambda: self._presigner.presigned_get_object(
                self._bucket, key, expires, response_headers=headers
            )
        )

    async def stat(self, key: str) -> ObjectStat | None:
        def stat() -> ObjectStat | None:
            try:
                found = self._client.stat_object(self._bucket, key)
            except S3Error as error:
                if error.code in _MISSING_CODES:
                    return None
                raise
            return ObjectStat(size=found.size or 0, content_type=found.content_type)

        return await _call(stat)

    async def sha256(self, key: str) -> str:
        def digest() -> str:
            response: urllib3.BaseHTTPResponse = self._client.get_object(
                self._bucket, key
            )
            try:
                hasher = hashlib.sha256()
                for chunk in response.stream(_CHUNK):
                    hasher.update(chunk)
                return hasher.hexdigest()
            finally:
                response.close()
                response.release_conn()

        return await _call(digest)

    async def delete(self, key: str) -> None:
        await _call(lambda: self._client.remove_object(self._bucket, key))

    async def list_keys(self, prefix: str) -> list[str]:
        def keys() -> list[str]:
            listing = self._client.list_objects(
                self._bucket, prefix=prefix, recursive=True
            )
            return [item.object_name for item in listing if item.object_name]

        return await _call(keys)


def _sign(operation: Callable[[], str]) -> str:
    # Presigning with the region set is a local HMAC, far cheaper than the
    # hand-off to a worker thread that every output and download URL paid.
    try:
        return operation()
    except (MinioException, OSError) as error:
        raise ObjectStoreError(f"{type(error).__name__}: {error}") from error


async def _call(operation: Callable[[], T]) -> T:
    try:
        return await asyncio.to_thread(operation)
    except (MinioException, urllib3.exceptions.HTTPError, OSError) as error:
        raise ObjectStoreError(f"{type(error).__name__}: {error}") from error
