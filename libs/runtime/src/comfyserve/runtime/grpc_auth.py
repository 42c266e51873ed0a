"""Credentials on gRPC: the server side checks every call's `authorization`
and knows who makes it; the client side sends a channel's credential."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextvars import ContextVar
from typing import Any

import grpc

from comfyserve.contracts.scopes import WRITE_SCOPES, Scope
from comfyserve.runtime.auth import CredentialVerifier, Principal

__all__ = [
    "AuthInterceptor",
    "bearer",
    "bearer_credential",
    "Forbidden",
    "caller",
    "require_admin",
    "require_service",
    "tenant_for",
    "tenant_of_call",
]


class Forbidden(Exception):
    """The caller is known but may not do this (a scope, another tenant)."""


_caller: ContextVar[Principal | None] = ContextVar("grpc_caller", default=None)


def caller() -> Principal | None:
    """Who makes the current call; None where the server checks no credentials
    (a test's in-process server)."""
    return _caller.get()


def tenant_of_call(requested: str, *scopes: str) -> str:
    """The tenant a call acts for, and a check that the caller may.

    A user or an API key acts for its own tenant only: a request naming another
    one is refused, never obeyed. One of our services names the tenant it acts
    for. Without credential checks the request's tenant stands.
    """
    return tenant_for(_caller.get(), requested, *scopes)


def tenant_for(principal: Principal | None, requested: str, *scopes: str) -> str:
    """`tenant_of_call` for a principal a message carries rather than a call."""
    if principal is None or principal.is_service:
        return requested
    missing = principal.missing(scopes)
    if missing:
        raise Forbidden(f"missing scope: {', '.join(missing)}")
    if requested and requested != principal.tenant_id:
        raise Forbidden("tenant_id is not the credential's tenant")
    if principal.tenant_suspended and WRITE_SCOPES.intersection(scopes):
        raise Forbidden("the tenant is suspended")
    return principal.tenant_id


def require_service() -> None:
    """Refuses a call unless one of our services makes it (dispatch)."""
    principal = _caller.get()
    if principal is not None and not principal.is_service:
        raise Forbidden("only this product's services may call this")


def require_admin() -> None:
    """Refuses a call unless one of our services or an administrator makes it
    (every tenant's usage and quotas)."""
    principal = _caller.get()
    if principal is None or principal.is_service:
        return
    if principal.missing([Scope.ADMIN]):
        raise Forbidden(f"missing scope: {Scope.ADMIN.value}")


def _with_credential(details: Any, header: tuple[str, str]) -> Any:
    metadata = grpc.aio.Metadata(*(details.metadata or ()), header)
    return grpc.aio.ClientCallDetails(
        details.method,
        details.timeout,
        metadata,
        details.credentials,
        details.wait_for_ready,
    )


class _BearerUnary(grpc.aio.UnaryUnaryClientInterceptor):
    def __init__(self, header: tuple[str, str]) -> None:
        self._header = header

    async def intercept_unary_unary(
        self, continuation: Any, details: Any, request: Any
    ) -> Any:
        return await continuation(_with_credential(details, self._header), request)


class _BearerStream(grpc.aio.UnaryStreamClientInterceptor):
    def __init__(self, header: tuple[str, str]) -> None:
        self._header = header

    async def intercept_unary_stream(
        self, continuation: Any, details: Any, request: Any
    ) -> Any:
        return await continuation(_with_credential(details, self._header), request)


def bearer(credential: str) -> list[grpc.aio.ClientInterceptor]:
    """Interceptors that send `credential` with every unary and server-streaming
    call. Two objects, not one: a channel files each interceptor under the first
    call kind it implements only, so one object would leave streams bare."""
    header = ("authorization", f"Bearer {credential}")
    return [_BearerUnary(header), _BearerStream(header)]


class AuthInterceptor(grpc.aio.ServerInterceptor):
    """Verifies the `authorization` credential of every call but the public
    ones, and makes its principal the call's `caller()`."""

    def __init__(self, verifier: CredentialVerifier, public: frozenset[str]):
        self._verifier = verifier
        self._public = public

    async def intercept_service(
        self, continuation: Callable[[Any], Awaitable[Any]], details: Any
    ) -> Any:
        handler = await continuation(details)
        method = str(details.method)
        if handler is None or method.split("/")[1] in self._public:
            return handler
        credential = _bearer(details.invocation_metadata)
        verify = self._verifier.verify
        if handler.unary_unary is not None:
            behavior = handler.unary_unary

            async def unary(request: Any, context: Any) -> Any:
                _caller.set(await verify(credential))
                return await behavior(request, context)

            return handler._replace(unary_unary=unary)
        if handler.unary_stream is not None:
            streamed = handler.unary_stream

            async def stream(request: Any, context: Any) -> AsyncIterator[Any]:
                _caller.set(await verify(credential))
                async for response in streamed(request, context):
                    yield response

            return handler._replace(unary_stream=stream)
        return handler


def _bearer(metadata: Sequence[tuple[str, str | bytes]] | None) -> str:
    for key, value in metadata or ():
        if key == "authorization" and isinstance(value, str):
            credential = bearer_credential(value)
            if credential:
                return credential
    return ""


def bearer_credential(authorization: str) -> str:
    """The credential of an `authorization` value (`Bearer <credential>`), or
    "" when it is not a bearer one."""
    scheme, _, credential = authorization.partition(" ")
    return credential.strip() if scheme.lower() == "bearer" else ""
