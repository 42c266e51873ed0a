"""The error answers the OpenAPI document promises: their body and when each comes.

Every route lists its answers with `error_responses(...)`; the answers of a
backing call come from `calls(...)`, so a route documents exactly what the
services it calls can make it say. Descriptions may name a limit as
`${setting}`; `openapi.py` puts the value in force there.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import grpc
from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import SkipJsonSchema

from comfyserve.gateway.errors import UNAVAILABLE_RETRY_AFTER_SECONDS


def _no_defaults(schema: dict[str, Any]) -> None:
    # Absent fields are left out of a body, never sent as null: no defaults.
    for item in schema.get("properties", {}).values():
        item.pop("default", None)


class FieldViolation(BaseModel):
    field: str = Field(description="Where: `body.workflow`, `query.limit`...")
    message: str


class PromptErrorItem(BaseModel):
    type: str
    message: str
    details: str
    extra_info: dict[str, Any]


class NodeErrors(BaseModel):
    errors: list[PromptErrorItem]
    dependent_outputs: list[str]
    class_type: str


class ErrorBody(BaseModel):
    """Every error answer; fields past `detail` come only with the codes named."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_no_defaults)

    error: str = Field(description="A stable code, such as `not_found`.")
    detail: str = Field(description="What went wrong, for a person.")
    fields: list[FieldViolation] | SkipJsonSchema[None] = Field(
        default=None,
        description="`invalid_request`, `invalid_argument` (422): what to fix.",
    )
    limit_bytes: int | SkipJsonSchema[None] = Field(
        default=None, description="`payload_too_large`: the limit passed."
    )
    error_type: str | SkipJsonSchema[None] = Field(
        default=None,
        description=(
            "`invalid_workflow`, `workflow_format_ui`: ComfyUI's error type, "
            "such as `prompt_outputs_failed_validation`."
        ),
    )
    node_errors: dict[str, NodeErrors] | SkipJsonSchema[None] = Field(
        default=None,
        description=(
            "`invalid_workflow`, `workflow_format_ui`: ComfyUI's errors by node id."
        ),
    )
    declared: str | SkipJsonSchema[None] = Field(
        default=None, description="`content_type_mismatch`: the type declared."
    )
    detected: str | None = Field(
        default=None,
        description=(
            "`content_type_mismatch`: the image type the bytes are, or null when "
            "they are no image."
        ),
    )
    failed: list[str] | SkipJsonSchema[None] = Field(
        default=None, description="`not_ready`: the checks that failed."
    )
    checks: dict[str, Literal["ok", "failed"]] | SkipJsonSchema[None] = Field(
        default=None, description="`not_ready`: every check and its state."
    )


@dataclass(frozen=True, slots=True)
class Answer:
    """One documented error answer: `name` keys its example, unique overall."""

    name: str
    status: int
    code: str
    when: str
    detail: str
    extra: Mapping[str, Any] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)

    def example(self) -> dict[str, Any]:
        return {"error": self.code, "detail": self.detail, **self.extra}


_BAD_WORKFLOW_NODE = {
    "3": {
        "errors": [
            {
                "type": "value_not_in_list",
                "message": "Value not in list",
                "details": "sampler_name: 'fast' not in ['euler', 'dpmpp_2m']",
                "extra_info": {"input_name": "sampler_name"},
            }
        ],
        "dependent_outputs": ["9"],
        "class_type": "KSampler",
    }
}

UNAUTHORIZED = Answer(
    "unauthorized",
    401,
    "unauthorized",
    "No bearer token, or one that is not valid.",
    "A valid bearer token is required",
    headers={"WWW-Authenticate": "`Bearer`"},
)
INSUFFICIENT_SCOPE = Answer(
    "insufficient_scope",
    403,
    "insufficient_scope",
    "The credential lacks the scope the route needs.",
    "This credential lacks the scope 'jobs:write'",
)
INVALID_REQUEST = Answer(
    "invalid_request",
    422,
    "invalid_request",
    "A parameter or body field is not valid; `fields` names each.",
    "The request is not valid",
    {"fields": [{"field": "body.workflow", "message": "Field required"}]},
)
BODY_TOO_LARGE = Answer(
    "body_too_large",
    413,
    "payload_too_large",
    "The JSON body is over ${max_body_bytes} bytes (`GATEWAY_MAX_BODY_BYTES`).",
    "The request body is larger than ${max_body_bytes} bytes",
    {"limit_bytes": "${max_body_bytes}"},
)
SERVICE_UNAVAILABLE = Answer(
    "service_unavailable",
    503,
    "service_unavailable",
    "A backing service is unavailable or did not answer in time; retry after "
    "`Retry-After` seconds.",
    "A backing service is unavailable; retry later",
    headers={"Retry-After": f"`{UNAVAILABLE_RETRY_AFTER_SECONDS}` (seconds)"},
)
INTERNAL_ERROR = Answer(
    "internal_error",
    500,
    "internal_error",
    "An unexpected failure here or in a backing service; `X-Request-Id` "
    "identifies it in the logs.",
    "Internal server error",
)

INVALID_IDEMPOTENCY_KEY = Answer(
    "invalid_idempotency_key",
    400,
    "invalid_idempotency_key",
    "`Idempotency-Key` is not 1 to 255 printable ASCII characters.",
    "Idempotency-Key must be 1 to 255 printable ASCII characters",
)
INVALID_WORKFLOW = Answer(
    "invalid_workflow",
    422,
    "invalid_workflow",
    "The workflow service refused the graph, in ComfyUI's shape (`error_type`, "
    "`node_errors`); a graph over ${max_workflow_bytes} bytes as compact JSON "
    "has `error_type` `prompt_limit_exceeded`.",
    "Prompt outputs failed validation",
    {
        "error_type": "prompt_outputs_failed_validation",
        "node_errors": _BAD_WORKFLOW_NODE,
    },
)
WORKFLOW_FORMAT_UI = Answer(
    "workflow_format_ui",
    422,
    "workflow_format_ui",
    "The graph is a ComfyUI UI export; export it in API format instead.",
    "This is a ComfyUI UI export (it has a 'nodes' list and 'links'), not an "
    'API-format workflow. Open it in ComfyUI and export it with "Save (API Format)".',
    {"error_type": "workflow_format_ui", "node_errors": {}},
)
IDEMPOTENCY_KEY_REUSE = Answer(
    "idempotency_key_reuse",
    422,
    "idempotency_key_reuse",
    "The `Idempotency-Key` was used with a different request.",
    "idempotency_key_reuse: this idempotency_key was used for a different request",
)
INVALID_ARGUMENT = Answer(
    "invalid_argument",
    422,
    "invalid_argument",
    "The workflow service refused a value; `fields` names it (a `timeout_minutes` "
    "over its own maximum, a `cursor` it did not issue).",
    "cursor: not a cursor this service issued",
    {"fields": [{"field": "cursor", "message": "not a cursor this service issued"}]},
)
JOB_NOT_FOUND = Answer(
    "job_not_found",
    404,
    "not_found",
    "No such execution, or another tenant's.",
    "No such workflow execution",
)

FILE_NOT_FOUND = Answer(
    "file_not_found",
    404,
    "not_found",
    "No such file, or another tenant's.",
    "No such file",
)
FILE_NOT_READY = Answer(
    "file_not_ready",
    409,
    "conflict",
    "The file's upload has not completed.",
    "file '6f1c…' has not been uploaded yet",
)
MALFORMED_UPLOAD = Answer(
    "malformed_upload",
    400,
    "bad_request",
    "The multipart body cannot be read (more than one file, another field, a "
    "`content_type` over 127 characters) or `content_type` is not a media type.",
    "content_type must be a media type such as image/png",
)
CONTENT_TYPE_REFUSED = Answer(
    "content_type_refused",
    400,
    "invalid_argument",
    "The storage service does not accept the upload's type (or name).",
    "content_type: 'application/x-msdownload' is not allowed",
)
FILE_TOO_LARGE = Answer(
    "file_too_large",
    413,
    "payload_too_large",
    "The file is over ${max_upload_bytes} bytes (`GATEWAY_MAX_UPLOAD_BYTES`).",
    "The request body is larger than ${max_upload_bytes} bytes",
    {"limit_bytes": "${max_upload_bytes}"},
)
MULTIPART_TOO_LARGE = Answer(
    "multipart_too_large",
    413,
    "payload_too_large",
    "The whole multipart body is over ${max_multipart_bytes} bytes (the file's "
    "limit and 64 KiB of framing), refused before it is read.",
    "The request body is larger than ${max_multipart_bytes} bytes",
    {"limit_bytes": "${max_multipart_bytes}"},
)
NO_FILE_PART = Answer(
    "no_file_part",
    422,
    "invalid_request",
    "The body has no `file` part (or is not `multipart/form-data`).",
    "The request is not valid",
    {"fields": [{"field": "body.file", "message": "A file part is required"}]},
)
EMPTY_FILE = Answer(
    "empty_file",
    422,
    "empty_file",
    "The file has no bytes.",
    "The file is empty",
)
CONTENT_TYPE_MISMATCH = Answer(
    "content_type_mismatch",
    422,
    "content_type_mismatch",
    "The declared image type is not what the bytes are (`declared`, `detected`).",
    "The file is declared image/png but its bytes are image/jpeg",
    {"declared": "image/png", "detected": "image/jpeg"},
)
UPLOAD_CONFLICT = Answer(
    "upload_conflict",
    409,
    "conflict",
    "The storage service did not find the bytes as sent (missing, or another "
    "SHA-256); upload again.",
    "the uploaded bytes do not match sha256",
)
UPLOAD_FAILED = Answer(
    "upload_failed",
    502,
    "upload_failed",
    "The object store refused the bytes or could not be reached.",
    "The object store refused the upload",
)

NOT_READY = Answer(
    "not_ready",
    503,
    "not_ready",
    "A dependency failed its check; `failed` names each.",
    "Not ready: redis",
    {
        "failed": ["redis"],
        "checks": {"workflow": "ok", "storage": "ok", "redis": "failed"},
    },
)

ANSWERS: Mapping[str, Answer] = {
    answer.name: answer
    for answer in (
        UNAUTHORIZED,
        INSUFFICIENT_SCOPE,
        INVALID_REQUEST,
        BODY_TOO_LARGE,
        SERVICE_UNAVAILABLE,
        INTERNAL_ERROR,
        INVALID_IDEMPOTENCY_KEY,
        INVALID_WORKFLOW,
        WORKFLOW_FORMAT_UI,
        IDEMPOTENCY_KEY_REUSE,
        INVALID_ARGUMENT,
        JOB_NOT_FOUND,
        FILE_NOT_FOUND,
        FILE_NOT_READY,
        MALFORMED_UPLOAD,
        CONTENT_TYPE_REFUSED,
        FILE_TOO_LARGE,
        MULTIPART_TOO_LARGE,
        NO_FILE_PART,
        EMPTY_FILE,
        CONTENT_TYPE_MISMATCH,
        UPLOAD_CONFLICT,
        UPLOAD_FAILED,
        NOT_READY,
    )
}

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
