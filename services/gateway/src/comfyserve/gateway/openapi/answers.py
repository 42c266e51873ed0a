"""Every documented error answer: its status, code, when it comes, an example.

Routes list them through `responses.error_responses`; those of access, `/auth`
and `/admin` are in `access_answers.py`. Descriptions may name a limit as
`${setting}`; `document.py` puts the value in force there.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from comfyserve.gateway.errors import UNAVAILABLE_RETRY_AFTER_SECONDS


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

# Any route: authentication, the request's shape, the backing services.
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
    "The credential lacks the scope the route needs, named in `required_scopes`.",
    "This credential lacks the scope 'workflows:write'",
    {"required_scopes": ["workflows:write"]},
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

# Job routes.
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

# Webhook routes.
WEBHOOK_ARGUMENT = Answer(
    "webhook_argument",
    422,
    "invalid_argument",
    "The notifier refused a value; `fields` names it (a `url` that is not http(s) "
    "or reaches a loopback, private, link-local or metadata address; a `cursor` "
    "it did not issue).",
    "url: 'hooks.internal' is refused: resolves to a private address 10.0.0.7",
    {
        "fields": [
            {
                "field": "url",
                "message": "'hooks.internal' is refused: resolves to a private "
                "address 10.0.0.7",
            }
        ]
    },
)
ENDPOINT_NOT_FOUND = Answer(
    "endpoint_not_found",
    404,
    "not_found",
    "No such webhook endpoint, or another tenant's.",
    "No such webhook endpoint",
)
DELIVERY_NOT_FOUND = Answer(
    "delivery_not_found",
    404,
    "not_found",
    "No such delivery, or another tenant's.",
    "No such delivery",
)

# File routes.
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

# Readiness.
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
