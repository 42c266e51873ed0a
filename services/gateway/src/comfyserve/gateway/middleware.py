"""Pure ASGI middleware, so streamed responses (SSE) pass through untouched."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import time
import uuid
from collections.abc import Callable, Iterable

import structlog
from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from comfyserve.gateway.errors import error_body
from comfyserve.gateway.limits.gcra import Decision
from comfyserve.gateway.metrics import HttpMetrics
from comfyserve.gateway.v2.errors import envelope, is_v2
from comfyserve.runtime.telemetry import current_traceparent

REQUEST_ID_HEADER = "X-Request-Id"
# The same id under the name the Comfy SDKs surface on their exceptions.
COMFY_REQUEST_ID_HEADER = "X-Comfy-Request-Id"
# The W3C trace context of the request's span: the caller can find its trace.
TRACEPARENT_HEADER = "traceparent"
# What a page on an allowed origin may read of an answer.
EXPOSED_HEADERS = [
    REQUEST_ID_HEADER,
    COMFY_REQUEST_ID_HEADER,
    TRACEPARENT_HEADER,
    "Idempotent-Replayed",
    "Location",
    "Retry-After",
    "RateLimit-Policy",
    "RateLimit",
]
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_DOCS_PATHS = ("/docs", "/redoc")
_QUIET_PATHS = ("/health/",)

# API answers are JSON and never framed; nothing in them needs to load anything.
API_CSP = (
    "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)
# Swagger UI and ReDoc, served from the gateway itself: nothing from another
# host. Their pages allow their own inline scripts by hash (`docs_csp`); styles
# stay 'unsafe-inline' because both UIs set style attributes and ReDoc injects
# <style> elements; ReDoc runs its search in a blob: worker.
_DOCS_DIRECTIVES = (
    "style-src 'self' 'unsafe-inline'",
    "img-src 'self' data:",
    "connect-src 'self'",
    "worker-src blob:",
    "frame-ancestors 'none'",
    "base-uri 'none'",
    "form-action 'self'",
)
DOCS_CSP = "; ".join(("default-src 'none'", "script-src 'self'", *_DOCS_DIRECTIVES))


def _source_hash(script: str) -> str:
    digest = hashlib.sha256(script.encode()).digest()
    return f"'sha256-{base64.b64encode(digest).decode()}'"


def docs_csp(inline_scripts: Iterable[str]) -> str:
    """The docs policy, also allowing exactly these inline scripts."""
    hashes = sorted({_source_hash(script) for script in inline_scripts})
    script_src = " ".join(("script-src 'self'", *hashes))
    return "; ".join(("default-src 'none'", script_src, *_DOCS_DIRECTIVES))


log = structlog.get_logger(__name__)


def error_body_for(
    scope: Scope, status: int, code: str, detail: str, **extra: object
) -> dict[str, object]:
    """An error body in the shape of the surface the request is for."""
    if is_v2(scope):
        return envelope(status, code, detail, **extra)
    return error_body(code, detail, **extra)


async def send_json(send: Send, status: int, body: dict[str, object]) -> None:
    payload = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})


class RequestContextMiddleware:
    """Request id, security headers, metrics and the access log of every request.

    It is the outermost of our middleware, so it also renders unhandled errors:
    those answers get a request id and security headers like every other.
    """

    def __init__(self, app: ASGIApp, metrics: HttpMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = Headers(scope=scope).get(REQUEST_ID_HEADER)
        request_id = (
            incoming
            if incoming and _REQUEST_ID.fullmatch(incoming)
            else uuid.uuid4().hex
        )
        path: str = scope["path"]
        csp = DOCS_CSP if path.startswith(_DOCS_PATHS) else API_CSP
        https = scope.get("scheme") == "https"
        status = 500
        started = False

        async def send_with_headers(message: Message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                started = True
                status = message["status"]
                headers = MutableHeaders(scope=message)
                headers[REQUEST_ID_HEADER] = request_id
                headers[COMFY_REQUEST_ID_HEADER] = request_id
                # The request's span: this runs inside the OpenTelemetry one.
                traceparent = current_traceparent()
                if traceparent is not None:
                    headers[TRACEPARENT_HEADER] = traceparent
                headers.setdefault("X-Content-Type-Options", "nosniff")
                headers.setdefault("X-Frame-Options", "DENY")
                headers.setdefault("Referrer-Policy", "no-referrer")
                headers.setdefault("Content-Security-Policy", csp)
                if https:
                    headers.setdefault("Strict-Transport-Security", "max-age=31536000")
                # Set by the route's rate limit once it has counted the request.
                decision = scope.get("state", {}).get("rate_limit")
                if isinstance(decision, Decision):
                    for name, value in decision.headers().items():
                        headers.setdefault(name, value)
            await send(message)

        structlog.contextvars.bind_contextvars(request_id=request_id)
        begun = time.perf_counter()
        try:
            await self.app(scope, receive, send_with_headers)
        except Exception:
            log.exception("gateway.request.failed", path=path)
            if started:
                raise
            await send_json(
                send_with_headers,
                500,
                error_body_for(scope, 500, "internal_error", "Internal server error"),
            )
        finally:
            elapsed = time.perf_counter() - begun
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            self.metrics.observe(scope["method"], route, status, elapsed)
            emit = log.debug if path.startswith(_QUIET_PATHS) else log.info
            emit(
                "gateway.request.finished",
                method=scope["method"],
                route=route,
                status=status,
                duration_ms=round(elapsed * 1000, 1),
                tenant_id=scope.get("state", {}).get("tenant_id"),
            )
            structlog.contextvars.unbind_contextvars(
                "request_id", "tenant_id", "job_id"
            )


class BodyLimitMiddleware:
    """Answers 413 for bodies over the limit, declared or streamed (chunked).

    The limit is checked on the raw bytes before anything parses them.
    """

    def __init__(self, app: ASGIApp, limit_for: Callable[[Scope], int]) -> None:
        self.app = app
        self.limit_for = limit_for

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope)
        declared = Headers(scope=scope).get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await self._too_large(scope, send, limit)
            return
        received = 0
        exceeded = False
        started = False

        async def limited_receive() -> Message:
            nonlocal received, exceeded
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    exceeded = True
                    raise _BodyTooLargeError
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            # Once over the limit, whatever the app made of the interrupted
            # body (a 400, a 500) is replaced by the 413 below.
            if exceeded:
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception:
            if not exceeded:
                raise
        if exceeded and not started:
            await self._too_large(scope, send, limit)

    @staticmethod
    async def _too_large(scope: Scope, send: Send, limit: int) -> None:
        await send_json(
            send,
            413,
            error_body_for(
                scope,
                413,
                "payload_too_large",
                f"The request body is larger than {limit} bytes",
                limit_bytes=limit,
            ),
        )


class _BodyTooLargeError(Exception):
    """Stops the app reading a body that has passed the limit."""
