"""The storage service's errors; each carries the gRPC status it is answered with."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import ClassVar

import grpc
import structlog

from comfyserve.storage.objects import ObjectStoreError

log = structlog.get_logger(__name__)


class StorageError(Exception):
    """Base error: `status` is the code the gRPC layer answers with."""

    status: ClassVar[grpc.StatusCode] = grpc.StatusCode.INTERNAL
    # The request field to fix, for errors a caller made.
    field: str | None = None

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgument(StorageError):
    status = grpc.StatusCode.INVALID_ARGUMENT

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field


class FileNotFound(StorageError):
    """Unknown file, or a file of another tenant: the two are indistinguishable."""

    status = grpc.StatusCode.NOT_FOUND

    def __init__(self, file_id: str) -> None:
        super().__init__(f"file {file_id!r} not found")


class FileNotReady(StorageError):
    status = grpc.StatusCode.FAILED_PRECONDITION


class UploadMissing(StorageError):
    status = grpc.StatusCode.FAILED_PRECONDITION


class ContentMismatch(StorageError):
    status = grpc.StatusCode.FAILED_PRECONDITION


class OutputSlotTaken(StorageError):
    status = grpc.StatusCode.FAILED_PRECONDITION


class AttemptSuperseded(StorageError):
    """The job has ended: no attempt may register outputs any more."""

    status = grpc.StatusCode.FAILED_PRECONDITION

    def __init__(self, job_id: str) -> None:
        super().__init__(
            f"attempt_superseded: job {job_id!r} has ended; its outputs are those "
            "of the attempt that ended it"
        )


class RegisteredAgain(StorageError):
    """The file was registered again while its upload was being checked."""

    status = grpc.StatusCode.FAILED_PRECONDITION


class TooLarge(StorageError):
    status = grpc.StatusCode.RESOURCE_EXHAUSTED


class ObjectStoreUnavailable(StorageError):
    status = grpc.StatusCode.UNAVAILABLE


@asynccontextmanager
async def store_errors() -> AsyncIterator[None]:
    """Answers a failed object store call as UNAVAILABLE, logging the cause."""
    try:
        yield
    except ObjectStoreError as error:
        log.warning("storage.object_store.failed", error=str(error))
        raise ObjectStoreUnavailable("the object store is unavailable") from error
