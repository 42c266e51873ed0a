"""Expected outcomes of the auth service, each with its gRPC status.

The runtime's interceptor answers each as its class says; the command line
prints the message.
"""

from __future__ import annotations

from collections.abc import Iterable

import grpc

from comfyserve.runtime.errors import ServiceError


class AuthError(ServiceError):
    """Base of every error this service reports to its callers; `reason` is
    the machine-readable cause callers may branch on (a gateway's error code),
    so every one has a reason."""

    code = grpc.StatusCode.FAILED_PRECONDITION
    reason: str = "failed_precondition"


class InvalidArgumentError(AuthError):
    """A request field is unusable; `field` names it for the caller."""

    code = grpc.StatusCode.INVALID_ARGUMENT
    reason = "invalid_argument"

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


class InvalidCredentialError(AuthError):
    """A token or key that is malformed, unknown, expired or revoked: one
    answer for all, so none tells a caller which it was."""

    code = grpc.StatusCode.UNAUTHENTICATED
    reason = "invalid_credential"

    def __init__(self) -> None:
        super().__init__("a valid credential is required")


class InvalidLoginError(AuthError):
    """A wrong password and an unknown e-mail alike."""

    code = grpc.StatusCode.UNAUTHENTICATED
    reason = "invalid_login"

    def __init__(self) -> None:
        super().__init__("invalid e-mail or password")


class TooManyAttemptsError(AuthError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED
    reason = "too_many_attempts"

    def __init__(self, retry_after_seconds: int) -> None:
        super().__init__(
            f"too many failed sign-ins; retry in {retry_after_seconds} s "
            f"(retry_after_seconds={retry_after_seconds})"
        )
        self.retry_after_s = retry_after_seconds


class MissingScopeError(AuthError):
    code = grpc.StatusCode.PERMISSION_DENIED
    reason = "missing_scope"

    def __init__(self, scopes: Iterable[str]) -> None:
        super().__init__(f"missing scope: {', '.join(sorted(scopes))}")


class TenantSuspendedError(AuthError):
    code = grpc.StatusCode.PERMISSION_DENIED
    reason = "tenant_suspended"

    def __init__(self) -> None:
        super().__init__("the tenant is suspended")


class NotFoundError(AuthError):
    code = grpc.StatusCode.NOT_FOUND
    reason = "not_found"

    def __init__(self, kind: str, identifier: str) -> None:
        super().__init__(f"{kind} {identifier!r} not found")


class EmailTakenError(AuthError):
    code = grpc.StatusCode.ALREADY_EXISTS
    reason = "email_taken"

    def __init__(self) -> None:
        super().__init__("email: a user with this e-mail exists")


class KeyLimitError(AuthError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED
    reason = "key_limit"

    def __init__(self, limit: int) -> None:
        super().__init__(
            f"the tenant has {limit} active API keys, the most it may; revoke one"
        )


class LastSigningKeyError(AuthError):
    reason = "last_signing_key"

    def __init__(self, kid: str) -> None:
        super().__init__(
            f"{kid!r} is the only signing key not retired; rotate-keys first"
        )


class UndecryptableKeyError(Exception):
    """Not an answer to any caller but a deployment fault: the service logs it
    and answers INTERNAL, and refuses to start with it."""

    def __init__(self, kid: str) -> None:
        super().__init__(
            f"signing key {kid!r} cannot be decrypted with "
            "AUTH_KEY_ENCRYPTION_SECRET; was the secret changed? rotate-keys "
            "makes a new signing key while the old ones keep verifying"
        )
