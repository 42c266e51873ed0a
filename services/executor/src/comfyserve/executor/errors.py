"""The executor's errors; each carries the failure code a job fails with."""

from __future__ import annotations

from typing import ClassVar

from comfyserve.contracts.events import FailureCode


class ExecutorError(Exception):
    """Base error: `code` and `retryable` go into the job's `failed` event."""

    code: ClassVar[FailureCode] = FailureCode.INTERNAL_ERROR
    retryable: ClassVar[bool] = True

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InputUnavailable(ExecutorError):
    """An input file of the job is missing or not readable; a retry cannot help."""

    code = FailureCode.INPUT_UNAVAILABLE
    retryable = False


class StorageFailed(ExecutorError):
    """The storage service or the object store failed; a retry may succeed."""

    code = FailureCode.STORAGE_ERROR
    retryable = True


class OutputRejected(ExecutorError):
    """The storage service refused an output (size or type limits); a retry
    would be refused the same way."""

    code = FailureCode.STORAGE_ERROR
    retryable = False


class DispatchUnavailable(Exception):
    """The workflow service could not be reached to renew leases."""
