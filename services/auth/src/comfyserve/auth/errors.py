"""Expected outcomes of the auth service, each with its status.

The gRPC transport maps `ErrorStatus` to status codes in one place
(`comfyserve.auth.grpc.rpc_status`); the command line prints the message.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum


class ErrorStatus(StrEnum):
    INVALID_ARGUMENT = "invalid_argument"
    UNAUTHENTICATED = "unauthenticated"
    PERMISSION_DENIED = "permission_denied"
    NOT_FOUND = "not_found"
    ALREADY_EXISTS = "already_exists"
    RESOURCE_EXHAUSTED = "resource_exhausted"
    FAILED_PRECONDITION = "failed_precondition"


class AuthError(Exception):
    """Base of every error this service reports to its callers; `reason` is
    the machine-readable cause callers may branch on (a gateway's error code)."""

    status: ErrorStatus = ErrorStatus.FAILED_PRECONDITION
    reason: str = "failed_precondition"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgumentError(AuthError):
    """A request field is unusable; `field` names it for the caller."""

    status = ErrorStatus.INVALID_ARGUMENT
    reason = "invalid_argument"

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


class InvalidCredentialError(AuthError):
    """A token or key that is malformed, unknown, expired or revoked: one
    answer for all, so none tells a caller which it was."""

    status = ErrorStatus.UNAUTHENTICATED
    reason = "invalid_credential"

    def __init__(self) -> None:
        super().__init__("a valid credential is required")


class InvalidLoginError(AuthError):
    """A wrong password and an unknown e-mail alike."""

    status = ErrorStatus.UNAUTHENTICATED
    reason = "invalid_login"

    def __init__(self) -> None:
        super().__init__("invalid e-mail or password")


class TooManyAttemptsError(AuthError):
    status = ErrorStatus.RESOURCE_EXHAUSTED
    reason = "too_many_attempts"

    def __init__(self, retry_after_seconds: int) -> None:
        super().__init__(
            f"too many failed sign-ins; retry in {retry_after_seconds} s "
            f"(retry_after_seconds={retry_after_seconds})"
        )
        self.retry_after_seconds = retry_after_seconds


class MissingScopeError(AuthError):
    status = ErrorStatus.PERMISSION_DENIED
    reason = "missing_scope"

    def __init__(self, scopes: Iterable[str]) -> None:
        super().__init__(f"missing scope: {', '.join(sorted(scopes))}")


class TenantSuspendedError(AuthError):
    status = ErrorStatus.PERMISSION_DENIED
    reason = "tenant_suspended"

    def __init__(self) -> None:
        super().__init__("the tenant is suspended")


class NotFoundError(AuthError):
    status = ErrorStatus.NOT_FOUND
    reason = "not_found"

    def __init__(self, kind: str, identifier: str) -> None:
        super().__init__(f"{kind} {identifier!r} not found")


class EmailTakenError(AuthError):
    status = ErrorStatus.ALREADY_EXISTS
    reason = "email_taken"

    def __init__(self) -> None:
        super().__init__("email: a user with this e-mail exists")


class KeyLimitError(AuthError):
    status = ErrorStatus.RESOURCE_EXHAUSTED
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
