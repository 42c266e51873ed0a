"""The Comfy API v2 error envelope (API.md §A.2) and the errors only v2 answers.

Every error the gateway raises renders as `{"error": <code>, "detail": ...}` on
our REST paths; under `/api/v2` the same error renders as
`{"error": {"code", "message", "details"}}` with the SDK's code for it, so one
exception serves both surfaces and the SDK never has to guess a code.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from starlette.types import Scope

from comfyserve.gateway.errors import GatewayError, RateLimitedError

V2_PREFIX = "/api/v2"

# Our REST codes that the SDK knows under another name.
_RENAMED = {
    "bad_request": "invalid_request",
    "invalid_argument": "invalid_request",
    "invalid_idempotency_key": "invalid_request",
    "invalid_credentials": "unauthorized",
    "insufficient_scope": "forbidden",
    "tenant_suspended": "forbidden",
    "bootstrap_key": "forbidden",
    "too_many_attempts": "rate_limited",
}


def is_v2(scope: Scope) -> bool:
    """Whether the request is for the v2 surface, wherever the app is mounted."""
    path: str = scope.get("path", "")
    root: str = scope.get("root_path", "")
    if root and path.startswith(root):
        path = path[len(root) :]
    return path == V2_PREFIX or path.startswith(f"{V2_PREFIX}/")


def v2_code(status: int, code: str) -> str:
    # A server-side failure is the SDK's upstream code whatever caused it, so
    # no internal name reaches a client.
    if status == 503:
        return "upstream_unreachable"
    if status >= 500:
        return "upstream_error"
    return _RENAMED.get(code, code)


def envelope(status: int, code: str, message: str, **details: Any) -> dict[str, Any]:
    return {
        "error": {
            "code": v2_code(status, code),
            "message": message,
            "details": details or None,
        }
    }


class V2InvalidRequestError(GatewayError):
    """A malformed v2 request: 400, as the SDK and the reference proxy answer."""

    status_code = 400
    code = "invalid_request"


class InvalidCursorError(V2InvalidRequestError):
    code = "invalid_cursor"

    def __init__(self) -> None:
        super().__init__("The cursor is not one this server issued")


class MetadataInvalidError(GatewayError):
    status_code = 422
    code = "metadata_invalid"


class ReservedFieldError(GatewayError):
    """`webhook_url` and `inputs` are reserved by the contract."""

    status_code = 422
    code = "invalid_workflow"

    def __init__(self, fields: Sequence[str]) -> None:
        names = ", ".join(sorted(fields))
        super().__init__(
            f"Reserved field(s) not accepted: {names}", extra={"fields": sorted(fields)}
        )


class MissingAssetError(GatewayError):
    status_code = 422
    code = "missing_asset"

    def __init__(self, message: str, missing_ids: Sequence[str]) -> None:
        super().__init__(message, extra={"missing_ids": list(missing_ids)})


class IdempotencyKeyReuseError(GatewayError):
    status_code = 422
    code = "idempotency_key_reuse"

    def __init__(self) -> None:
        super().__init__("This Idempotency-Key was already used")


class TooManyStreamsError(RateLimitedError):
    code = "too_many_streams"
