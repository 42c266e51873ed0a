"""The handlers that render every error, and what a gRPC status becomes.

Each error is rendered once in our REST shape; a v2 request gets the same
error in the Comfy API v2 envelope (`v2.errors`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

import grpc
import structlog
from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from comfyserve.contracts.limits import GRPC_MAX_MESSAGE_BYTES
from comfyserve.gateway.errors import (
    GatewayError,
    QueueFullError,
    ServiceUnavailableError,
    error_response,
)
from comfyserve.gateway.v2.errors import envelope, is_v2
from comfyserve.runtime.grpc import rpc_details

log = structlog.get_logger(__name__)

# The workflow service's reason for a submit over the tenant's queued quota.
QUEUE_FULL_REASON = "queue_full"
# Retry-After of a full queue whose refusal named no wait.
QUEUE_FULL_RETRY_AFTER_SECONDS = 2


def _render(error: GatewayError) -> JSONResponse:
    return error_response(
        error.status_code,
        error.code,
        error.detail,
        headers=error.headers,
        **error.extra,
    )


def _for_surface(request: Request, response: JSONResponse) -> Response:
    """The answer in the shape of the surface asked: under `/api/v2`, the
    Comfy API v2 envelope of the same error."""
    if not is_v2(request.scope):
        return response
    body = json.loads(bytes(response.body))
    code, message = body.pop("error"), body.pop("detail")
    headers = {
        name: value
        for name, value in response.headers.items()
        if name.lower() not in ("content-length", "content-type")
    }
    return JSONResponse(
        envelope(response.status_code, code, message, **body),
        status_code=response.status_code,
        headers=headers,
    )


def rpc_error_response(error: grpc.aio.AioRpcError) -> JSONResponse:
    """The HTTP answer for a status code returned by a service we call."""
    code = error.code()
    detail = error.details() or ""
    if code == grpc.StatusCode.NOT_FOUND:
        return error_response(404, "not_found", detail or "Not found")
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        fields = [
            {"field": field, "message": message}
            for field, message in rpc_details(error).fields.items()
        ]
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
        details = rpc_details(error)
        if details.reason == QUEUE_FULL_REASON:
            wait = details.retry_after_s or QUEUE_FULL_RETRY_AFTER_SECONDS
            return _render(QueueFullError(detail or "The queue is full", wait))
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
        return _render(ServiceUnavailableError())
    # UNAUTHENTICATED or PERMISSION_DENIED from workflow or storage mean this
    # gateway's own service key is wrong: a deployment fault, not the caller's.
    log.error("gateway.upstream.failed", grpc_code=code.name)
    return error_response(500, "internal_error", "Internal server error")


def _field_path(location: Sequence[int | str]) -> str:
    return ".".join(str(part) for part in location)


async def _on_gateway_error(request: Request, exc: GatewayError) -> Response:
    return _for_surface(request, _render(exc))


async def _on_rpc_error(request: Request, exc: grpc.aio.AioRpcError) -> Response:
    return _for_surface(request, rpc_error_response(exc))


async def _on_validation_error(
    request: Request, exc: RequestValidationError
) -> Response:
    fields = [
        {"field": _field_path(item["loc"]), "message": item["msg"]}
        for item in exc.errors()
    ]
    return _for_surface(
        request,
        error_response(
            422, "invalid_request", "The request is not valid", fields=fields
        ),
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
    return _for_surface(
        request,
        error_response(
            exc.status_code,
            _HTTP_CODES.get(exc.status_code, f"http_{exc.status_code}"),
            str(exc.detail),
            headers=exc.headers,
        ),
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
