"""Which error answers each route documents, as FastAPI `responses`.

A route lists its own answers and, with `calls(...)`, those of the backing calls
it makes, so it documents exactly what the services it calls can make it say.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import grpc

from comfyserve.gateway.openapi.answers import (
    CONTENT_TYPE_REFUSED,
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
}

AUTHENTICATED = (UNAUTHORIZED, INSUFFICIENT_SCOPE)


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
