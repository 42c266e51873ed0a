"""The storage service's errors; each carries the gRPC status it is answered with."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import grpc
import structlog

from comfyserve.runtime.errors import ServiceError
from comfyserve.storage.objects import ObjectStoreError

log = structlog.get_logger(__name__)


class StorageError(ServiceError):
    """Base of every error this service reports to its callers."""


class InvalidArgument(StorageError):
    code = grpc.StatusCode.INVALID_ARGUMENT

    # No `problem`: the field's violation is described by the whole message,
    # as callers of this service have always read it.
    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field


class FileNotFound(StorageError):
    """Unknown file, or a file of another tenant: the two are indistinguishable."""

    code = grpc.StatusCode.NOT_FOUND

    def __init__(self, file_id: str) -> None:
        super().__init__(f"file {file_id!r} not found")


class NoSuchFile(StorageError):
    """No file of the tenant has that hash or name; another tenant's is no
    different."""

    code = grpc.StatusCode.NOT_FOUND


class FileNotReady(StorageError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class UploadMissing(StorageError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class ContentMismatch(StorageError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class OutputSlotTaken(StorageError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class AttemptSuperseded(StorageError):
    """The job has ended: no attempt may register outputs any more."""

    code = grpc.StatusCode.FAILED_PRECONDITION

    def __init__(self, job_id: str) -> None:
        super().__init__(
            f"attempt_superseded: job {job_id!r} has ended; its outputs are those "
            "of the attempt that ended it"
        )


class RegisteredAgain(StorageError):
    """The file was registered again while its upload was being checked."""

    code = grpc.StatusCode.FAILED_PRECONDITION


class TooLarge(StorageError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class ObjectStoreUnavailable(StorageError):
    code = grpc.StatusCode.UNAVAILABLE


@asynccontextmanager
async def store_errors() -> AsyncIterator[None]:
    """Answers a failed object store call as UNAVAILABLE, logging the cause."""
    try:
        yield
    except ObjectStoreError as error:
        log.warning("storage.object_store.failed", error=str(error))
        raise ObjectStoreUnavailable("the object store is unavailable") from error
