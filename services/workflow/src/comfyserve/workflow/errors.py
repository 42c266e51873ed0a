"""Expected outcomes of the workflow service, each with its status.

Transport modules map `ErrorStatus` to their own codes in one place.
"""

from __future__ import annotations

from enum import StrEnum


class ErrorStatus(StrEnum):
    INVALID_ARGUMENT = "invalid_argument"
    NOT_FOUND = "not_found"
    ALREADY_EXISTS = "already_exists"
    RESOURCE_EXHAUSTED = "resource_exhausted"
    UNAVAILABLE = "unavailable"
    INTERNAL = "internal"


class WorkflowError(Exception):
    """Base of every error this service reports to its callers."""

    status: ErrorStatus = ErrorStatus.INTERNAL

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgumentError(WorkflowError):
    """A request field is unusable; `field` names it for the caller."""

    status = ErrorStatus.INVALID_ARGUMENT

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


class InvalidCursorError(InvalidArgumentError):
    def __init__(self) -> None:
        super().__init__("cursor", "not a cursor this service issued")


class JobNotFoundError(WorkflowError):
    status = ErrorStatus.NOT_FOUND

    def __init__(self, job_id: str) -> None:
        super().__init__(f"job {job_id!r} not found")


class IdempotencyKeyReuseError(WorkflowError):
    status = ErrorStatus.ALREADY_EXISTS

    def __init__(self) -> None:
        super().__init__(
            "idempotency_key_reuse: this idempotency_key was used for a "
            "different request"
        )


class CatalogUnavailableError(WorkflowError):
    status = ErrorStatus.UNAVAILABLE

    def __init__(self) -> None:
        super().__init__("no executor has published its node catalog yet")


class StorageUnavailableError(WorkflowError):
    status = ErrorStatus.UNAVAILABLE

    def __init__(self, detail: str) -> None:
        super().__init__(f"storage service unavailable: {detail}")


class QueueFullError(WorkflowError):
    """The tenant has as many jobs queued as its quota allows."""

    status = ErrorStatus.RESOURCE_EXHAUSTED
    reason = "queue_full"

    def __init__(self, max_queued: int, retry_after_seconds: float) -> None:
        super().__init__(
            f"queue_full: this tenant already has {max_queued} jobs queued, "
            "its limit; retry once some have started"
        )
        self.retry_after_seconds = retry_after_seconds
