"""gRPC channels and servers: the product's message limits, one way errors
become status codes, call metrics on both ends, the health service and
reflection.

Every channel and server sends and receives up to `GRPC_MAX_MESSAGE_BYTES`, so
a request is only ever refused by the documented limits of the API, never by
gRPC's 4 MiB default.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import grpc
import structlog
from google.protobuf.any_pb2 import Any as AnyDetail
from google.protobuf.duration_pb2 import Duration
from google.protobuf.message import Message
from google.rpc import error_details_pb2, status_pb2  # type: ignore[import-untyped]
from grpc_health.v1 import health_pb2, health_pb2_grpc  # type: ignore[import-untyped]
from grpc_health.v1.health import aio as health_aio  # type: ignore[import-untyped]
from grpc_reflection.v1alpha import reflection  # type: ignore[import-untyped]
from opentelemetry.instrumentation.grpc import (
    aio_client_interceptors,
    aio_server_interceptor,
)
from prometheus_client import CollectorRegistry, Counter, Histogram

from comfyserve.contracts.limits import GRPC_MAX_MESSAGE_BYTES
from comfyserve.runtime.auth import AuthUnavailable, CredentialVerifier, Unauthenticated
from comfyserve.runtime.errors import ServiceError
from comfyserve.runtime.grpc_auth import AuthInterceptor, Forbidden, bearer
from comfyserve.runtime.logging import describe_error

__all__ = [
    "ERROR_DOMAIN",
    "OPTIONS",
    "STATUS_DETAILS_KEY",
    "GrpcServer",
    "RpcDetails",
    "RpcStatus",
    "count_client_calls",
    "create_server",
    "insecure_channel",
    "rpc_details",
    "rpc_status",
    "serve_grpc",
]

log = structlog.get_logger(__name__)

OPTIONS: Sequence[tuple[str, int]] = (
    ("grpc.max_send_message_length", GRPC_MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", GRPC_MAX_MESSAGE_BYTES),
)
STATUS_DETAILS_KEY = "grpc-status-details-bin"
# The `domain` of every `google.rpc.ErrorInfo` this product sends.
ERROR_DOMAIN = "comfyserve"
_HEALTH = health_pb2.DESCRIPTOR.services_by_name["Health"].full_name
_UNAUTHENTICATED = "a valid credential is required"
_AUTH_UNAVAILABLE = "credentials cannot be checked now; retry"
_HEALTH_METHOD_PREFIX = f"/{_HEALTH}/"


def _traced(details: grpc.HandlerCallDetails | grpc.aio.ClientCallDetails) -> bool:
    """Whether a call gets a span: health checks are polls, not work, and
    would fill the trace store. The instrumentation's own filters cost 10 µs
    a call (an `isinstance` against a `typing.Protocol`) on every call made
    or served; the method's prefix is all this needs."""
    method: str | bytes = details.method
    # grpc.aio hands client interceptors the method as bytes.
    if isinstance(method, bytes):
        method = method.decode()
    return not method.startswith(_HEALTH_METHOD_PREFIX)


@dataclass(frozen=True, slots=True)
class RpcStatus:
    """How one expected error is answered; `field` names the request field
    to fix (sent as a `google.rpc.BadRequest`), `reason` a machine-readable
    cause (a `google.rpc.ErrorInfo`) and `retry_after_s` when to try again (a
    `google.rpc.RetryInfo`)."""

    code: grpc.StatusCode
    message: str
    field: str | None = None
    problem: str | None = None
    reason: str | None = None
    retry_after_s: float | None = None


def rpc_status(error: Exception) -> RpcStatus | None:
    """The answer to any service's `ServiceError`; None for anything else,
    which the interceptor logs and answers INTERNAL."""
    if not isinstance(error, ServiceError):
        return None
    return RpcStatus(
        error.code,
        error.message,
        field=error.field,
        problem=error.problem,
        reason=error.reason,
        retry_after_s=error.retry_after_s,
    )


class _ClientMetrics:
    def __init__(self, registry: CollectorRegistry, prefix: str) -> None:
        self.requests = Counter(
            f"{prefix}_grpc_client_requests",
            "gRPC calls made, by called service, method and status code.",
            ["service", "method", "code"],
            registry=registry,
        )
        self.latency = Histogram(
            f"{prefix}_grpc_client_request_duration_seconds",
            "Time from making a gRPC call to its status, by called service "
            "and method (a stream's whole life).",
            ["service", "method"],
            registry=registry,
        )


# A process is one service: its channels count into the registry it serves.
_client_metrics: _ClientMetrics | None = None


def count_client_calls(registry: CollectorRegistry, prefix: str) -> None:
    """Count and time every call of this process's channels, those made
    before too, as `<prefix>_grpc_client_*` in `registry`."""
    global _client_metrics
    _client_metrics = _ClientMetrics(registry, prefix)


class _CallWatch:
    """Observes each call when its status arrives, without waiting for it:
    a stream's reader, not an interceptor, decides how long it lives."""

    def __init__(self) -> None:
        # Tasks reading a finished call's status, held until they have run.
        self._pending: set[asyncio.Task[None]] = set()

    def __call__(self, call: Any, details: Any) -> Any:
        metrics = _client_metrics
        if metrics is None:
            return call
        method = details.method
        if isinstance(method, bytes):
            method = method.decode()
        service, _, name = str(method).lstrip("/").rpartition("/")
        started = time.perf_counter()

        async def observe(done: Any) -> None:
            code = await done.code()
            metrics.requests.labels(service, name, code.name).inc()
            metrics.latency.labels(service, name).observe(time.perf_counter() - started)

        def finished(done: Any) -> None:
            # The status is there already; reading it is a coroutine.
            task = asyncio.get_running_loop().create_task(observe(done))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)

        call.add_done_callback(finished)
        return call


# A channel files each interceptor under one kind of call only, so each kind
# the product makes has its own.
class _UnaryCallMetrics(grpc.aio.UnaryUnaryClientInterceptor):
    def __init__(self, watch: _CallWatch) -> None:
        self._watch = watch

    async def intercept_unary_unary(
        self, continuation: Any, client_call_details: Any, request: Any
    ) -> Any:
        call = await continuation(client_call_details, request)
        return self._watch(call, client_call_details)


class _StreamCallMetrics(grpc.aio.UnaryStreamClientInterceptor):
    def __init__(self, watch: _CallWatch) -> None:
        self._watch = watch

    async def intercept_unary_stream(
        self, continuation: Any, client_call_details: Any, request: Any
    ) -> Any:
        call = await continuation(client_call_details, request)
        return self._watch(call, client_call_details)


def insecure_channel(target: str, credential: str | None = None) -> grpc.aio.Channel:
    """A channel to `target`, its calls counted as `count_client_calls` says;
    with `credential`, every call carries it."""
    # Innermost, so it is handed the call itself, not a tracing wrapper of it.
    interceptors: list[grpc.aio.ClientInterceptor] = [
        *aio_client_interceptors(filter_=_traced),  # type: ignore[no-untyped-call]
        _UnaryCallMetrics(watch := _CallWatch()),
        _StreamCallMetrics(watch),
    ]
    if credential is not None:
        interceptors.extend(bearer(credential))
    return grpc.aio.insecure_channel(target, options=OPTIONS, interceptors=interceptors)


def create_server(
    interceptors: Sequence[grpc.aio.ServerInterceptor] = (),
) -> grpc.aio.Server:
    # The span comes first, so it also covers calls the other interceptors refuse.
    return grpc.aio.server(
        interceptors=[
            aio_server_interceptor(filter_=_traced),  # type: ignore[no-untyped-call]
            *interceptors,
        ],
        options=OPTIONS,
    )


def _trailer(status: RpcStatus) -> tuple[tuple[str, bytes], ...]:
    details: list[Message] = []
    if status.field is not None:
        violation = error_details_pb2.BadRequest.FieldViolation(
            field=status.field, description=status.problem or status.message
        )
        details.append(error_details_pb2.BadRequest(field_violations=[violation]))
    if status.reason is not None:
        details.append(
            error_details_pb2.ErrorInfo(reason=status.reason, domain=ERROR_DOMAIN)
        )
    if status.retry_after_s is not None:
        delay = Duration()
        delay.FromNanoseconds(int(status.retry_after_s * 1e9))
        details.append(error_details_pb2.RetryInfo(retry_delay=delay))
    if not details:
        return ()
    packed = []
    for detail in details:
        wrapped = AnyDetail()
        wrapped.Pack(detail)
        packed.append(wrapped)
    body = status_pb2.Status(
        code=status.code.value[0], message=status.message, details=packed
    )
    return ((STATUS_DETAILS_KEY, body.SerializeToString()),)


@dataclass(frozen=True, slots=True)
class RpcDetails:
    """What a refusal from one of our services says beyond its code: the
    request fields to fix (field to description), its reason and when to retry."""

    fields: dict[str, str]
    reason: str | None = None
    retry_after_s: float | None = None


def rpc_details(error: grpc.aio.AioRpcError) -> RpcDetails:
    """The details an `RpcStatus` sent with `error`; empty for other errors."""
    fields: dict[str, str] = {}
    reason: str | None = None
    retry_after_s: float | None = None
    for key, value in error.trailing_metadata() or ():
        if key != STATUS_DETAILS_KEY or not isinstance(value, bytes):
            continue
        for detail in status_pb2.Status.FromString(value).details:
            bad_request = error_details_pb2.BadRequest()
            info = error_details_pb2.ErrorInfo()
            retry = error_details_pb2.RetryInfo()
            if detail.Unpack(bad_request):
                for violation in bad_request.field_violations:
                    fields[violation.field] = violation.description
            elif detail.Unpack(info):
                reason = info.reason
            elif detail.Unpack(retry):
                retry_after_s = retry.retry_delay.ToNanoseconds() / 1e9
    return RpcDetails(fields, reason, retry_after_s)


async def _abort(context: Any, status: RpcStatus) -> None:
    await context.abort(status.code, status.message, trailing_metadata=_trailer(status))


# Request fields every log line of the call names, where the request has them.
_LOG_FIELDS = ("job_id", "tenant_id")


def _log_fields(request: Any) -> dict[str, str]:
    if not isinstance(request, Message):
        return {}
    fields = request.DESCRIPTOR.fields_by_name
    return {
        name: value
        for name in _LOG_FIELDS
        if name in fields and isinstance(value := getattr(request, name), str) and value
    }


class _CallInterceptor(grpc.aio.ServerInterceptor):
    """Answers every handler's errors through `rpc_status`, counts and times
    every call, and binds the request's `job_id` and `tenant_id` to its log
    lines."""

    def __init__(self, requests: Counter, latency: Histogram):
        self._requests = requests
        self._latency = latency

    async def intercept_service(
        self, continuation: Callable[[Any], Awaitable[Any]], details: Any
    ) -> Any:
        handler = await continuation(details)
        if handler is None:
            return None
        method = str(details.method).rsplit("/", 1)[-1]
        if handler.unary_unary is not None:
            return handler._replace(
                unary_unary=self._unary(method, handler.unary_unary)
            )
        if handler.unary_stream is not None:
            return handler._replace(
                unary_stream=self._stream(method, handler.unary_stream)
            )
        return handler

    def _unary(self, method: str, behavior: Any) -> Any:
        async def call(request: Any, context: Any) -> Any:
            started = time.perf_counter()
            code = grpc.StatusCode.OK
            try:
                with structlog.contextvars.bound_contextvars(**_log_fields(request)):
                    return await behavior(request, context)
            except grpc.aio.AbortError:
                code = context.code() or grpc.StatusCode.UNKNOWN
                raise
            except Exception as error:
                status = self._answer(method, error)
                code = status.code
                await _abort(context, status)
            finally:
                self._observe(method, code, started)

        return call

    def _stream(self, method: str, behavior: Any) -> Any:
        async def call(request: Any, context: Any) -> AsyncIterator[Any]:
            started = time.perf_counter()
            code = grpc.StatusCode.OK
            try:
                with structlog.contextvars.bound_contextvars(**_log_fields(request)):
                    async for response in behavior(request, context):
                        yield response
            except grpc.aio.AbortError:
                code = context.code() or grpc.StatusCode.UNKNOWN
                raise
            except Exception as error:
                status = self._answer(method, error)
                code = status.code
                await _abort(context, status)
            finally:
                self._observe(method, code, started)

        return call

    def _answer(self, method: str, error: Exception) -> RpcStatus:
        if isinstance(error, Unauthenticated):
            return RpcStatus(grpc.StatusCode.UNAUTHENTICATED, _UNAUTHENTICATED)
        if isinstance(error, Forbidden):
            return RpcStatus(grpc.StatusCode.PERMISSION_DENIED, str(error))
        if isinstance(error, AuthUnavailable):
            return RpcStatus(
                grpc.StatusCode.UNAVAILABLE, "credentials cannot be checked now"
            )
        status = rpc_status(error)
        if status is None:
            log.exception("grpc.internal_error", method=method)
            return RpcStatus(grpc.StatusCode.INTERNAL, "internal error")
        if status.code is grpc.StatusCode.INTERNAL:
            log.error("grpc.internal_error", method=method, error=describe_error(error))
        return status

    def _observe(self, method: str, code: grpc.StatusCode, started: float) -> None:
        self._requests.labels(method, code.name).inc()
        self._latency.labels(method).observe(time.perf_counter() - started)


@dataclass(frozen=True, slots=True)
class GrpcServer:
    port: int
    _health: Any

    async def set_serving(self, service: str, serving: bool) -> None:
        status = health_pb2.HealthCheckResponse
        await self._health.set(
            service, status.SERVING if serving else status.NOT_SERVING
        )


@asynccontextmanager
async def serve_grpc(
    *,
    service: str,
    add_servicers: Callable[[grpc.aio.Server], None],
    registry: CollectorRegistry,
    metrics_prefix: str,
    address: str,
    serving: bool = True,
    shutdown_grace_s: float = 10.0,
    verifier: CredentialVerifier | None = None,
    public_services: Sequence[str] = (),
) -> AsyncIterator[GrpcServer]:
    """A started server with `service`, the health service (`""` SERVING, and
    `service` as `serving` says) and reflection; stopped gracefully on exit.

    A handler's `ServiceError` is answered as it says (`rpc_status`), any
    other error as a bare INTERNAL. With `verifier`, every call but those of
    health, reflection and `public_services` must carry a credential it
    accepts.
    """
    requests = Counter(
        f"{metrics_prefix}_grpc_requests",
        "gRPC calls answered, by method and status code.",
        ["method", "code"],
        registry=registry,
    )
    latency = Histogram(
        f"{metrics_prefix}_grpc_request_duration_seconds",
        "Time to answer a gRPC call, by method.",
        ["method"],
        registry=registry,
    )
    interceptors: list[grpc.aio.ServerInterceptor] = [
        _CallInterceptor(requests, latency)
    ]
    if verifier is not None:
        public = frozenset({_HEALTH, reflection.SERVICE_NAME, *public_services})
        interceptors.append(AuthInterceptor(verifier, public))
    server = create_server(interceptors)
    add_servicers(server)
    health = health_aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    reflection.enable_server_reflection(
        (service, _HEALTH, reflection.SERVICE_NAME), server
    )
    port = server.add_insecure_port(address)
    await server.start()
    running = GrpcServer(port, health)
    await running.set_serving("", True)
    await running.set_serving(service, serving)
    try:
        yield running
    finally:
        await health.enter_graceful_shutdown()
        # Open streams end here; clients reconnect to another instance.
        await server.stop(shutdown_grace_s)
