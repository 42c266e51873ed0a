"""Every error the gateway answers, and the handlers that render them.

All error bodies share one shape: `{"error": <code>, "detail": <text>, ...extra}`,
documented as `openapi.body.ErrorBody`; a new error or extra field belongs there
too.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Mapping, Sequence
from typing import Any

import grpc
import structlog
from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

# googleapis-common-protos ships .pyi files but no py.typed marker.
from google.rpc import error_details_pb2, status_pb2  # type: ignore[import-untyped]
from starlette.exceptions import HTTPException as StarletteHTTPException

from comfyserve.contracts.limits import GRPC_MAX_MESSAGE_BYTES

log = structlog.get_logger(__name__)


_STATUS_DETAILS_KEY = "grpc-status-details-bin"
UNAVAILABLE_RETRY_AFTER_SECONDS = 5


class GatewayError(Exception):
    """An expected outcome that maps to one HTTP answer."""

    status_code = 500
    code = "internal_error"

    def __init__(
        self,
        detail: str,
        *,
        extra: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = dict(extra or {})
        self.headers = dict(headers or {})


class UnauthorizedError(GatewayError):
    status_code = 401
    code = "unauthorized"

    def __init__(self, detail: str = "A valid bearer token is required") -> None:
        super().__init__(detail, headers={"WWW-Authenticate": "Bearer"})


class ForbiddenError(GatewayError):
    status_code = 403
    code = "insufficient_scope"


class NotFoundError(GatewayError):
    status_code = 404
    code = "not_found"


class BadRequestError(GatewayError):
    status_code = 400
    code = "bad_request"


class InvalidRequestError(GatewayError):
    """A request that fails validation outside pydantic, shaped like its errors."""

    status_code = 422
    code = "invalid_request"

    def __init__(self, field: str, message: str) -> None:
        super().__init__(
            "The request is not valid",
            extra={"fields": [{"field": field, "message": message}]},
        )


class InvalidIdempotencyKeyError(BadRequestError):
    code = "invalid_idempotency_key"


class PayloadTooLargeError(GatewayError):
    status_code = 413
    code = "payload_too_large"

    def __init__(self, limit_bytes: int) -> None:
        super().__init__(
            f"The request body is larger than {limit_bytes} bytes",
            extra={"limit_bytes": limit_bytes},
        )


class EmptyFileError(GatewayError):
    status_code = 422
    code = "empty_file"

    def __init__(self) -> None:
        super().__init__("The file is empty")


class ContentTypeMismatchError(GatewayError):
    """The bytes of an upload are not of the image type it was declared as."""

    status_code = 422
    code = "content_type_mismatch"

    def __init__(self, declared: str, detected: str | None) -> None:
        what = detected or "not an image Pillow can read"
        super().__init__(
            f"The file is declared {declared} but its bytes are {what}",
            extra={"declared": declared, "detected": detected},
        )


class InvalidWorkflowError(GatewayError):
    """The workflow service rejected a graph; `extra` has ComfyUI's error shape."""

    status_code = 422
    code = "invalid_workflow"

    def __init__(
        self, detail: str, *, code: str, extra: Mapping[str, Any] | None = None
    ) -> None:
        super().__init__(detail, extra=extra)
        self.code = code


class UploadFailedError(GatewayError):
    """The object store refused or dropped the bytes of an upload."""

    status_code = 502
    code = "upload_failed"


class ServiceUnavailableError(GatewayError):
    status_code = 503
    code = "service_unavailable"


def error_body(code: str, detail: str, **extra: Any) -> dict[str, Any]:
    return {"error": code, "detail": detail, **extra}


def error_response(
    status_code: int,
    code: str,
    detail: str,
    *,
    headers: Mapping[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    return JSONResponse(
        error_body(code, detail, **extra), status_code=status_code, headers=headers
    )


def _field_violations(error: grpc.aio.AioRpcError) -> list[dict[str, str]]:
    """Field violations of a `google.rpc.BadRequest` attached to the status."""
    for key, value in error.trailing_metadata() or ():
        if key != _STATUS_DETAILS_KEY or not isinstance(value, bytes):
            continue
        status = status_pb2.Status.FromString(value)
        violations: list[dict[str, str]] = []
        for detail in status.details:
            bad_request = error_details_pb2.BadRequest()
            if detail.Unpack(bad_request):
                violations.extend(
                    {"field": item.field, "message": item.description}
                    for item in bad_request.field_violations
                )
        return violations
    return []


def rpc_error_response(error: grpc.aio.AioRpcError) -> JSONResponse:
    """The HTTP answer for a status code returned by a service we call."""
    code = error.code()
    detail = error.details() or ""
    if code == grpc.StatusCode.NOT_FOUND:
        return error_response(404, "not_found", detail or "Not found")
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        fields = _field_violations(error)
        if fields:
            return error_response(
                422, "invalid_argument", detail or "Invalid argument", fields=fields
            )
        return error_response(400, "invalid_argument", detail or "Invalid argument")
    if code == grpc.StatusCode.ALREADY_EXISTS:
        return error_response(
            422,
            "idempotency_key_reuse",
            detail or "The Idempotency-Key was used with a different request",
        )
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
        # Uploads name their own limit (files.service); what is left is a
        # message over the transport's limit, whose text is gRPC's internals.
        log.warning("gateway.upstream.too_large", grpc_detail=detail)
        return error_response(
            413,
            "payload_too_large",
            "The request is larger than a backing service accepts",
            limit_bytes=GRPC_MAX_MESSAGE_BYTES,
        )
    if code == grpc.StatusCode.FAILED_PRECONDITION:
        return error_response(409, "conflict", detail or "Conflict")
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
        log.warning("gateway.upstream.unavailable", grpc_code=code.name)
        return error_response(
            503,
            "service_unavailable",
            "A backing service is unavailable; retry later",
            headers={"Retry-After": str(UNAVAILABLE_RETRY_AFTER_SECONDS)},
        )
    log.error("gateway.upstream.failed", grpc_code=code.name)
    return error_response(500, "internal_error", "Internal server error")


def _field_path(location: Sequence[int | str]) -> str:
    return ".".join(str(part) for part in location)


async def _on_gateway_error(request: Request, exc: GatewayError) -> Response:
    return error_response(
        exc.status_code, exc.code, exc.detail, headers=exc.headers, **exc.extra
    )


async def _on_rpc_error(request: Request, exc: grpc.aio.AioRpcError) -> Response:
    return rpc_error_response(exc)


async def _on_validation_error(
    request: Request, exc: RequestValidationError
) -> Response:
    fields = [
        {"field": _field_path(item["loc"]), "message": item["msg"]}
        for item in exc.errors()
    ]
    return error_response(
        422, "invalid_request", "The request is not valid", fields=fields
    )


_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    413: "payload_too_large",
    415: "unsupported_media_type",
}


async def _on_http_exception(request: Request, exc: StarletteHTTPException) -> Response:
    return error_response(
        exc.status_code,
        _HTTP_CODES.get(exc.status_code, f"http_{exc.status_code}"),
        str(exc.detail),
        headers=exc.headers,
    )


ExceptionHandlers = dict[
    int | type[Exception], Callable[[Request, Any], Coroutine[Any, Any, Response]]
]


def exception_handlers() -> ExceptionHandlers:
    """One handler per kind of failure, given to the FastAPI constructor."""
    return {
        GatewayError: _on_gateway_error,
        grpc.aio.AioRpcError: _on_rpc_error,
        RequestValidationError: _on_validation_error,
        StarletteHTTPException: _on_http_exception,
    }
