"""The notifier's errors; each carries the gRPC status it is answered with."""

from __future__ import annotations

import grpc

from comfyserve.runtime.errors import ServiceError


class NotifierError(ServiceError):
    """Base of every error this service reports to its callers."""


class InvalidArgument(NotifierError):
    code = grpc.StatusCode.INVALID_ARGUMENT

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


class EndpointNotFound(NotifierError):
    """Unknown endpoint, or one of another tenant: the two look the same."""

    code = grpc.StatusCode.NOT_FOUND

    def __init__(self, endpoint_id: str) -> None:
        super().__init__(f"endpoint {endpoint_id!r} not found")


class DeliveryNotFound(NotifierError):
    code = grpc.StatusCode.NOT_FOUND

    def __init__(self, delivery_id: str) -> None:
        super().__init__(f"delivery {delivery_id!r} not found")
