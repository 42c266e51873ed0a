"""Which error answers each route documents, as FastAPI `responses`.

A route lists its own answers and, with `calls(...)`, those of the backing calls
it makes, so it documents exactly what the services it calls can make it say.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import grpc

from comfyserve.gateway.auth.dependencies import Access, PublicLimit
from comfyserve.gateway.openapi import access_answers, answers
from comfyserve.gateway.openapi.access_answers import (
    AUTH_FORBIDDEN,
    AUTH_UNAVAILABLE,
    EMAIL_TAKEN,
    INVALID_LOGIN,
    INVALID_REFRESH_TOKEN,
    KEY_LIMIT,
    KEY_NOT_FOUND,
    LIMITS_UNAVAILABLE,
    LOGIN_THROTTLED,
    QUEUE_FULL,
    RATE_LIMITED,
    REFUSED_ARGUMENT,
    TENANT_NOT_FOUND,
    TENANT_SUSPENDED,
)
from comfyserve.gateway.openapi.answers import (
    CONTENT_TYPE_REFUSED,
    DELIVERY_NOT_FOUND,
    ENDPOINT_NOT_FOUND,
    FILE_NOT_FOUND,
    FILE_NOT_READY,
    FILE_TOO_LARGE,
    IDEMPOTENCY_KEY_REUSE,
    INSUFFICIENT_SCOPE,
    INTERNAL_ERROR,
    INVALID_ARGUMENT,
    JOB_NOT_FOUND,
    SERVICE_UNAVAILABLE,
    UNAUTHORIZED,
    UPLOAD_CONFLICT,
    WEBHOOK_ARGUMENT,
    Answer,
)
from comfyserve.gateway.openapi.body import ErrorBody

# Whatever a call answers besides: a channel that is down or a deadline that
# passed is 503; anything unexpected (INTERNAL, UNKNOWN) is 500.
TRANSPORT_ANSWERS: Mapping[grpc.StatusCode, Answer] = {
    grpc.StatusCode.UNAVAILABLE: SERVICE_UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED: SERVICE_UNAVAILABLE,
    grpc.StatusCode.INTERNAL: INTERNAL_ERROR,
    grpc.StatusCode.UNKNOWN: INTERNAL_ERROR,
}

# The status codes each backing call answers to what the gateway sends, and
# the answer each becomes (None: handled, no error). Read from the services'
# error classes; codes a service gives only for a request the gateway never
# makes (no tenant id, an unknown priority, too many ids) are left out.
RPC_ANSWERS: Mapping[str, Mapping[grpc.StatusCode, Answer | None]] = {
    "submit_job": {
        grpc.StatusCode.INVALID_ARGUMENT: INVALID_ARGUMENT,
        grpc.StatusCode.ALREADY_EXISTS: IDEMPOTENCY_KEY_REUSE,
        grpc.StatusCode.RESOURCE_EXHAUSTED: QUEUE_FULL,
    },
    "validate_workflow": {},
    "list_jobs": {grpc.StatusCode.INVALID_ARGUMENT: INVALID_ARGUMENT},
    "get_job": {grpc.StatusCode.NOT_FOUND: JOB_NOT_FOUND},
    "cancel_job": {grpc.StatusCode.NOT_FOUND: JOB_NOT_FOUND},
    "watch_job": {grpc.StatusCode.NOT_FOUND: JOB_NOT_FOUND},
    # A job's output whose file retention removed is shown without a URL.
    "get_download_urls": {grpc.StatusCode.NOT_FOUND: None},
    "create_upload": {
        grpc.StatusCode.INVALID_ARGUMENT: CONTENT_TYPE_REFUSED,
        grpc.StatusCode.RESOURCE_EXHAUSTED: FILE_TOO_LARGE,
    },
    "complete_upload": {
        grpc.StatusCode.FAILED_PRECONDITION: UPLOAD_CONFLICT,
        grpc.StatusCode.RESOURCE_EXHAUSTED: FILE_TOO_LARGE,
    },
    "get_file": {grpc.StatusCode.NOT_FOUND: FILE_NOT_FOUND},
    "get_download_url": {
        grpc.StatusCode.NOT_FOUND: FILE_NOT_FOUND,
        grpc.StatusCode.FAILED_PRECONDITION: FILE_NOT_READY,
    },
    # AuthService: those made with the caller's credential answer
    # UNAUTHENTICATED when it was revoked since this gateway last checked it.
    "register": {
        grpc.StatusCode.ALREADY_EXISTS: EMAIL_TAKEN,
        grpc.StatusCode.INVALID_ARGUMENT: REFUSED_ARGUMENT,
    },
    "login": {
        grpc.StatusCode.UNAUTHENTICATED: INVALID_LOGIN,
        grpc.StatusCode.RESOURCE_EXHAUSTED: LOGIN_THROTTLED,
        grpc.StatusCode.INVALID_ARGUMENT: REFUSED_ARGUMENT,
    },
    "refresh": {
        grpc.StatusCode.UNAUTHENTICATED: INVALID_REFRESH_TOKEN,
        grpc.StatusCode.INVALID_ARGUMENT: REFUSED_ARGUMENT,
    },
    "get_jwks": {},
    "logout": {
        grpc.StatusCode.UNAUTHENTICATED: UNAUTHORIZED,
        grpc.StatusCode.INVALID_ARGUMENT: REFUSED_ARGUMENT,
    },
    "create_api_key": {
        grpc.StatusCode.UNAUTHENTICATED: UNAUTHORIZED,
        grpc.StatusCode.PERMISSION_DENIED: AUTH_FORBIDDEN,
        grpc.StatusCode.RESOURCE_EXHAUSTED: KEY_LIMIT,
        grpc.StatusCode.INVALID_ARGUMENT: REFUSED_ARGUMENT,
    },
    "list_api_keys": {
        grpc.StatusCode.UNAUTHENTICATED: UNAUTHORIZED,
        grpc.StatusCode.PERMISSION_DENIED: AUTH_FORBIDDEN,
    },
    "revoke_api_key": {
        grpc.StatusCode.UNAUTHENTICATED: UNAUTHORIZED,
        grpc.StatusCode.PERMISSION_DENIED: AUTH_FORBIDDEN,
        grpc.StatusCode.NOT_FOUND: KEY_NOT_FOUND,
    },
    "list_tenants": {
        grpc.StatusCode.UNAUTHENTICATED: UNAUTHORIZED,
        grpc.StatusCode.PERMISSION_DENIED: AUTH_FORBIDDEN,
        grpc.StatusCode.INVALID_ARGUMENT: REFUSED_ARGUMENT,
    },
    "set_tenant_suspended": {
        grpc.StatusCode.UNAUTHENTICATED: UNAUTHORIZED,
        grpc.StatusCode.PERMISSION_DENIED: AUTH_FORBIDDEN,
        grpc.StatusCode.NOT_FOUND: TENANT_NOT_FOUND,
    },
    # Usage and quotas: the gateway calls as itself, having checked `admin`.
    "get_usage": {},
    "get_storage_usage": {},
    "get_tenant_quota": {},
    "set_tenant_quota": {grpc.StatusCode.INVALID_ARGUMENT: REFUSED_ARGUMENT},
    # NotifierService.
    "create_endpoint": {grpc.StatusCode.INVALID_ARGUMENT: WEBHOOK_ARGUMENT},
    "list_endpoints": {grpc.StatusCode.INVALID_ARGUMENT: WEBHOOK_ARGUMENT},
    "get_endpoint": {grpc.StatusCode.NOT_FOUND: ENDPOINT_NOT_FOUND},
    "update_endpoint": {
        grpc.StatusCode.NOT_FOUND: ENDPOINT_NOT_FOUND,
        grpc.StatusCode.INVALID_ARGUMENT: WEBHOOK_ARGUMENT,
    },
    "delete_endpoint": {grpc.StatusCode.NOT_FOUND: ENDPOINT_NOT_FOUND},
    "test_endpoint": {grpc.StatusCode.NOT_FOUND: ENDPOINT_NOT_FOUND},
    "rotate_endpoint_secret": {grpc.StatusCode.NOT_FOUND: ENDPOINT_NOT_FOUND},
    "get_signing_secret": {},
    "rotate_signing_secret": {},
    "list_deliveries": {grpc.StatusCode.INVALID_ARGUMENT: WEBHOOK_ARGUMENT},
    "get_delivery": {grpc.StatusCode.NOT_FOUND: DELIVERY_NOT_FOUND},
    "replay_delivery": {grpc.StatusCode.NOT_FOUND: DELIVERY_NOT_FOUND},
}

# Every documented answer, by name.
ANSWERS: Mapping[str, Answer] = {
    value.name: value
    for module in (answers, access_answers)
    for value in vars(module).values()
    if isinstance(value, Answer)
}


def guarded(access: Access) -> tuple[Answer, ...]:
    """What a route's guard can answer: no principal, no scope, the rate limit
    (a write's without Redis), a suspended tenant's write."""
    found = [UNAUTHORIZED, AUTH_UNAVAILABLE, RATE_LIMITED, INSUFFICIENT_SCOPE]
    if access.route_class.writes:
        found.append(LIMITS_UNAVAILABLE)
    if access.refused_when_suspended:
        found.append(TENANT_SUSPENDED)
    return tuple(found)


def limited(limit: PublicLimit) -> tuple[Answer, ...]:
    """What a public route's rate limit can answer."""
    if limit.route_class.writes:
        return (RATE_LIMITED, LIMITS_UNAVAILABLE)
    return (RATE_LIMITED,)


def calls(*methods: str) -> tuple[Answer, ...]:
    """The answers of these backing calls, transport failures included."""
    found = [
        answer
        for method in methods
        for answer in RPC_ANSWERS[method].values()
        if answer is not None
    ]
    return (*found, *TRANSPORT_ANSWERS.values())


def _description(answers: list[Answer]) -> str:
    if len(answers) == 1:
        return f"`{answers[0].code}`: {answers[0].when}"
    return "\n".join(f"- `{answer.code}`: {answer.when}" for answer in answers)


def _response(answers: list[Answer]) -> dict[str, Any]:
    response: dict[str, Any] = {
        "model": ErrorBody,
        "description": _description(answers),
        "content": {
            "application/json": {
                "examples": {
                    answer.name: {"summary": answer.when, "value": answer.example()}
                    for answer in answers
                }
            }
        },
    }
    headers = {
        name: {"description": text, "schema": {"type": "string"}}
        for answer in answers
        for name, text in answer.headers.items()
    }
    if headers:
        response["headers"] = headers
    return response


def error_responses(*answers: Answer) -> dict[int | str, dict[str, Any]]:
    """FastAPI `responses` for these answers, grouped by status."""
    by_status: dict[int, dict[str, Answer]] = {}
    for answer in answers:
        by_status.setdefault(answer.status, {})[answer.name] = answer
    return {
        status: _response(list(named.values()))
        for status, named in sorted(by_status.items())
    }
