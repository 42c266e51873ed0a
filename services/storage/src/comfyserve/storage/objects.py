"""The object store boundary: the S3 operations the service needs, nothing more."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Protocol


@dataclass(frozen=True)
class ObjectStat:
    size: int
    content_type: str | None


class ObjectStoreError(Exception):
    """The store could not be reached or refused an operation."""


class ObjectStore(Protocol):
    @property
    def bucket(self) -> str: ...

    async def ensure_bucket(self) -> None: ...

    async def presign_put(self, key: str, expires: timedelta) -> str: ...

    async def presign_get(
        self, key: str, expires: timedelta, *, content_type: str, disposition: str
    ) -> str: ...

    async def stat(self, key: str) -> ObjectStat | None:
        """The object's size and type, or None when there is no such object."""
        ...

    async def sha256(self, key: str) -> str:
        """Hex SHA-256 of the object's bytes, read as a stream."""
        ...

    async def delete(self, key: str) -> None:
        """Removes the object; removing a missing object is not an error."""
        ...

    async def list_keys(self, prefix: str) -> list[str]:
        """Keys of every object whose key starts with `prefix`."""
        ...
