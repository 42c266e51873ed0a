"""The base of every error a service answers its callers with.

Each service's `errors.py` subclasses `ServiceError` once for its own base and
once per expected outcome; `comfyserve.runtime.grpc.rpc_status` turns any of
them into the gRPC answer, so no service writes that mapping itself.
"""

from __future__ import annotations

from typing import ClassVar

import grpc

__all__ = ["ServiceError"]


class ServiceError(Exception):
    """An expected outcome: `code` is the gRPC status it is answered with,
    `field` and `problem` the request field to fix, `reason` a cause callers
    may branch on and `retry_after_s` when trying again may succeed."""

    code: ClassVar[grpc.StatusCode] = grpc.StatusCode.INTERNAL
    reason: str | None = None
    field: str | None = None
    problem: str | None = None
    retry_after_s: float | None = None

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
