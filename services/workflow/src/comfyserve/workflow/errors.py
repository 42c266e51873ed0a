"""Expected outcomes of the workflow service, each with its gRPC status, which
the runtime's interceptor answers as each class says."""

from __future__ import annotations

import grpc

from comfyserve.runtime.errors import ServiceError


class WorkflowError(ServiceError):
    """Base of every error this service reports to its callers."""


class InvalidArgumentError(WorkflowError):
    """A request field is unusable; `field` names it for the caller."""

    code = grpc.StatusCode.INVALID_ARGUMENT

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


class InvalidCursorError(InvalidArgumentError):
    def __init__(self) -> None:
        super().__init__("cursor", "not a cursor this service issued")


class JobNotFoundError(WorkflowError):
    code = grpc.StatusCode.NOT_FOUND

    def __init__(self, job_id: str) -> None:
        super().__init__(f"job {job_id!r} not found")


class IdempotencyKeyReuseError(WorkflowError):
    code = grpc.StatusCode.ALREADY_EXISTS

    def __init__(self) -> None:
        super().__init__(
            "idempotency_key_reuse: this idempotency_key was used for a "
            "different request"
        )


class CatalogUnavailableError(WorkflowError):
    code = grpc.StatusCode.UNAVAILABLE

    def __init__(self) -> None:
        super().__init__("no executor has published its node catalog yet")


class StorageUnavailableError(WorkflowError):
    code = grpc.StatusCode.UNAVAILABLE

    def __init__(self, detail: str) -> None:
        super().__init__(f"storage service unavailable: {detail}")


class QueueFullError(WorkflowError):
    """The tenant has as many jobs queued as its quota allows."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED
    reason = "queue_full"

    def __init__(self, max_queued: int, retry_after_seconds: float) -> None:
        super().__init__(
            f"queue_full: this tenant already has {max_queued} jobs queued, "
            "its limit; retry once some have started"
        )
        self.retry_after_s = retry_after_seconds


class PartnerKeysUnavailableError(WorkflowError):
    """Redis, which holds partner-node keys, did not answer."""

    code = grpc.StatusCode.UNAVAILABLE

    def __init__(self, detail: str) -> None:
        # Names the failure only: the key is never part of a message.
        super().__init__(f"partner key store unavailable: {detail}")
