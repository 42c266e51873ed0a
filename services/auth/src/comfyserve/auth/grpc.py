"""`AuthService` over gRPC: one servicer made of each feature's calls. Errors
become status codes in `rpc_status`, which the runtime's interceptor applies
to every call."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import grpc

from comfyserve.auth.credentials.grpc import CredentialRpcs
from comfyserve.auth.credentials.service import CredentialService
from comfyserve.auth.errors import (
    AuthError,
    ErrorStatus,
    InvalidArgumentError,
    TooManyAttemptsError,
)
from comfyserve.auth.keys.grpc import KeyRpcs
from comfyserve.auth.keys.service import ApiKeyService
from comfyserve.auth.signing.grpc import SigningRpcs
from comfyserve.auth.signing.service import SigningKeys
from comfyserve.auth.tenants.grpc import TenantRpcs
from comfyserve.auth.tenants.service import TenantAdmin
from comfyserve.auth.tokens.grpc import TokenRpcs
from comfyserve.auth.tokens.service import TokenService
from comfyserve.auth.users.grpc import UserRpcs
from comfyserve.auth.users.service import LoginService, RegistrationService
from comfyserve.contracts.pb.auth.v1 import auth_pb2_grpc
from comfyserve.runtime.grpc import RpcStatus

STATUS_CODES: Mapping[ErrorStatus, grpc.StatusCode] = {
    ErrorStatus.INVALID_ARGUMENT: grpc.StatusCode.INVALID_ARGUMENT,
    ErrorStatus.UNAUTHENTICATED: grpc.StatusCode.UNAUTHENTICATED,
    ErrorStatus.PERMISSION_DENIED: grpc.StatusCode.PERMISSION_DENIED,
    ErrorStatus.NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    ErrorStatus.ALREADY_EXISTS: grpc.StatusCode.ALREADY_EXISTS,
    ErrorStatus.RESOURCE_EXHAUSTED: grpc.StatusCode.RESOURCE_EXHAUSTED,
    ErrorStatus.FAILED_PRECONDITION: grpc.StatusCode.FAILED_PRECONDITION,
}


def rpc_status(error: Exception) -> RpcStatus | None:
    """The answer to one of this service's errors; None for anything else,
    which the interceptor logs and answers INTERNAL."""
    if isinstance(error, InvalidArgumentError):
        return RpcStatus(
            grpc.StatusCode.INVALID_ARGUMENT,
            error.message,
            field=error.field,
            problem=error.problem,
            reason=error.reason,
        )
    if isinstance(error, TooManyAttemptsError):
        return RpcStatus(
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            error.message,
            reason=error.reason,
            retry_after_s=error.retry_after_seconds,
        )
    if isinstance(error, AuthError):
        return RpcStatus(STATUS_CODES[error.status], error.message, reason=error.reason)
    return None


@dataclass(frozen=True, slots=True)
class AuthApis:
    """The services behind `AuthService`."""

    credentials: CredentialService
    signing: SigningKeys
    registrations: RegistrationService
    logins: LoginService
    tokens: TokenService
    keys: ApiKeyService
    tenants: TenantAdmin


class AuthServicer(
    CredentialRpcs,
    SigningRpcs,
    UserRpcs,
    TokenRpcs,
    KeyRpcs,
    TenantRpcs,
    auth_pb2_grpc.AuthServiceServicer,
):
    def __init__(self, apis: AuthApis) -> None:
        self._credentials = apis.credentials
        self._signing = apis.signing
        self._registrations = apis.registrations
        self._logins = apis.logins
        self._tokens = apis.tokens
        self._keys = apis.keys
        self._tenants = apis.tenants
