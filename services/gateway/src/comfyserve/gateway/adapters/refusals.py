"""Refusals of a backing call that mean something of their own to a route.

The generic gRPC → HTTP mapping (`handlers.rpc_error_response`) fits the job
and file calls; the auth service's codes say other things (ALREADY_EXISTS is a
taken e-mail, UNAUTHENTICATED a wrong password), so its callers translate them
here and leave the rest (UNAVAILABLE...) to the generic mapping.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager

import grpc

from comfyserve.gateway.errors import (
    ForbiddenError,
    GatewayError,
    TenantSuspendedError,
    UnauthorizedError,
)
from comfyserve.runtime.grpc import rpc_details

# The auth service's reason for refusing a suspended tenant's write.
TENANT_SUSPENDED_REASON = "tenant_suspended"
Translation = Mapping[grpc.StatusCode, Callable[[grpc.aio.AioRpcError], GatewayError]]


def _forbidden(error: grpc.aio.AioRpcError) -> GatewayError:
    if rpc_details(error).reason == TENANT_SUSPENDED_REASON:
        return TenantSuspendedError()
    return ForbiddenError(error.details() or "Forbidden")


def _unauthorized(error: grpc.aio.AioRpcError) -> GatewayError:
    # Verified here a moment ago, refused there now: revoked in between.
    return UnauthorizedError("The bearer token is not valid")


# Calls made with the caller's own credential.
AS_CALLER: Translation = {
    grpc.StatusCode.UNAUTHENTICATED: _unauthorized,
    grpc.StatusCode.PERMISSION_DENIED: _forbidden,
}


@contextmanager
def translated(translation: Translation) -> Iterator[None]:
    """Raises the translated error for the codes in `translation`."""
    try:
        yield
    except grpc.aio.AioRpcError as error:
        make = translation.get(error.code())
        if make is None:
            raise
        raise make(error) from None
