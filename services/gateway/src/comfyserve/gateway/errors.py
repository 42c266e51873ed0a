"""Every error the gateway answers; `handlers.py` renders them.

All error bodies share one shape: `{"error": <code>, "detail": <text>, ...extra}`,
documented as `openapi.body.ErrorBody`; a new error or extra field belongs there
too.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from fastapi.responses import JSONResponse

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


class InvalidLoginError(GatewayError):
    """A wrong password and an unknown e-mail alike."""

    status_code = 401
    code = "invalid_credentials"

    def __init__(self) -> None:
        super().__init__(
            "Invalid e-mail or password", headers={"WWW-Authenticate": "Bearer"}
        )


class ForbiddenError(GatewayError):
    """Refused by the auth service: scopes beyond the caller's own, say."""

    status_code = 403
    code = "forbidden"


class MissingScopeError(ForbiddenError):
    """Names the scope the route needs (those it takes, if any of several)."""

    code = "insufficient_scope"

    def __init__(self, scopes: Iterable[str]) -> None:
        needed = sorted(scopes)
        if len(needed) == 1:
            detail = f"This credential lacks the scope {needed[0]!r}"
        else:
            listed = ", ".join(repr(scope) for scope in needed)
            detail = f"This credential holds none of the scopes {listed}"
        super().__init__(detail, extra={"required_scopes": needed})


class TenantSuspendedError(ForbiddenError):
    code = "tenant_suspended"

    def __init__(self) -> None:
        super().__init__("This tenant is suspended: it may read but not write")


class BootstrapKeyError(ForbiddenError):
    """The route acts through the auth service, which never saw this key."""

    code = "bootstrap_key"

    def __init__(self) -> None:
        super().__init__(
            "A bootstrap key (GATEWAY_API_KEYS) is unknown to the auth service; "
            "use an access token or an API key it issued"
        )


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


class ConflictError(GatewayError):
    status_code = 409
    code = "conflict"


class EmailTakenError(ConflictError):
    code = "email_taken"

    def __init__(self) -> None:
        super().__init__("A user with this e-mail exists")


class KeyLimitError(ConflictError):
    code = "key_limit"


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


class RateLimitedError(GatewayError):
    """A 429: retry after `Retry-After` seconds, at least one."""

    status_code = 429
    code = "rate_limited"

    def __init__(
        self,
        detail: str,
        retry_after_s: float,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        wait = max(1, math.ceil(retry_after_s))
        super().__init__(detail, headers={**(headers or {}), "Retry-After": str(wait)})


class TooManyAttemptsError(RateLimitedError):
    code = "too_many_attempts"


class QueueFullError(RateLimitedError):
    code = "queue_full"


class ServiceUnavailableError(GatewayError):
    status_code = 503
    code = "service_unavailable"

    def __init__(
        self, detail: str = "A backing service is unavailable; retry later"
    ) -> None:
        super().__init__(
            detail, headers={"Retry-After": str(UNAVAILABLE_RETRY_AFTER_SECONDS)}
        )


class LimitsUnavailableError(ServiceUnavailableError):
    code = "limits_unavailable"

    def __init__(self) -> None:
        super().__init__(
            "Rate limiting is unavailable (Redis cannot be reached): writes are "
            "refused until it is back; reads are served meanwhile"
        )


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
