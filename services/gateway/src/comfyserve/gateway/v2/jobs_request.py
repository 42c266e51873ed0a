"""The body of `POST /api/v2/jobs`, checked in the order of API.md §A.3.1.

Decoded by hand rather than by a pydantic model because the contract gives
each fault its own status and code (400 for a body that is not JSON, 422
`invalid_workflow`, `workflow_format_ui`, 400 for `extra_data`, 422
`metadata_invalid`), which one validation error could not tell apart.
"""

from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import dataclass, field
from typing import Any

from comfyserve.contracts.workflow_format import PARTNER_KEY
from comfyserve.gateway.errors import InvalidWorkflowError
from comfyserve.gateway.jobs.translate import WORKFLOW_FORMAT_UI
from comfyserve.gateway.v2.errors import (
    MetadataInvalidError,
    ReservedFieldError,
    V2InvalidRequestError,
)

MAX_METADATA_PAIRS = 16
MAX_METADATA_VALUE_BYTES = 256
_METADATA_KEY = re.compile(r"[A-Za-z0-9_.-]{1,40}")
_KNOWN_FIELDS = frozenset({"workflow", "extra_data", "metadata", "priority"})
_RESERVED_FIELDS = frozenset({"webhook_url", "inputs"})
# Bidirectional controls reorder displayed text; a label must read as sent.
_BIDI = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e") | frozenset(
    "\u2066\u2067\u2068\u2069"
)


@dataclass(frozen=True, slots=True)
class SubmitBody:
    workflow: dict[str, Any]
    metadata: dict[str, str]
    # The partner-node key: never stored, logged or echoed (`repr` hides it).
    partner_key: str | None = field(default=None, repr=False)


def parse_submit(raw: bytes) -> SubmitBody:
    try:
        body = json.loads(raw)
    except ValueError:
        raise V2InvalidRequestError("The body is not valid JSON") from None
    if not isinstance(body, dict):
        raise V2InvalidRequestError("The body must be a JSON object")
    workflow = body.get("workflow")
    if not isinstance(workflow, dict) or not workflow:
        raise InvalidWorkflowError(
            "`workflow` must be a non-empty API-format graph", code="invalid_workflow"
        )
    if isinstance(workflow.get("nodes"), list) and "links" in workflow:
        raise InvalidWorkflowError(
            "The workflow is a UI export; submit the API-format graph "
            "(Export (API) in ComfyUI)",
            code=WORKFLOW_FORMAT_UI,
        )
    reserved = _RESERVED_FIELDS & body.keys()
    if reserved:
        raise ReservedFieldError(sorted(reserved))
    unknown = body.keys() - _KNOWN_FIELDS
    if unknown:
        raise V2InvalidRequestError(
            f"Unknown field(s): {', '.join(sorted(unknown))}",
            extra={"fields": sorted(unknown)},
        )
    priority = body.get("priority")
    if priority is not None and (
        not isinstance(priority, int) or isinstance(priority, bool)
    ):
        raise V2InvalidRequestError("`priority` must be an integer")
    return SubmitBody(
        workflow=workflow,
        metadata=_metadata(body.get("metadata")),
        partner_key=_partner_key(body.get("extra_data")),
    )


def _partner_key(extra_data: object) -> str | None:
    if extra_data is None:
        return None
    if not isinstance(extra_data, dict):
        raise V2InvalidRequestError("`extra_data` must be an object")
    unknown = extra_data.keys() - {PARTNER_KEY}
    if unknown:
        raise V2InvalidRequestError(
            f"`extra_data` accepts only {PARTNER_KEY!r}",
            extra={"fields": sorted(unknown)},
        )
    key = extra_data.get(PARTNER_KEY)
    if key is None:
        return None
    # The message names the field, never the value.
    if not isinstance(key, str) or not key.strip():
        raise V2InvalidRequestError(f"`extra_data.{PARTNER_KEY}` must be a string")
    return key


def _metadata(metadata: object) -> dict[str, str]:
    if metadata is None:
        return {}
    if not isinstance(metadata, dict):
        raise MetadataInvalidError("`metadata` must be an object of string labels")
    if len(metadata) > MAX_METADATA_PAIRS:
        raise MetadataInvalidError(f"At most {MAX_METADATA_PAIRS} metadata labels")
    for key, value in metadata.items():
        if not _METADATA_KEY.fullmatch(key):
            raise MetadataInvalidError(
                "Metadata keys are 1 to 40 characters of A-Z a-z 0-9 _ . -",
                extra={"key": key[:40]},
            )
        if not isinstance(value, str):
            raise MetadataInvalidError(
                "Metadata values must be strings", extra={"key": key}
            )
        if len(value.encode()) > MAX_METADATA_VALUE_BYTES:
            raise MetadataInvalidError(
                f"A metadata value is at most {MAX_METADATA_VALUE_BYTES} bytes",
                extra={"key": key},
            )
        if any(unicodedata.category(c) == "Cc" or c in _BIDI for c in value):
            raise MetadataInvalidError(
                "Metadata values may not hold control or bidirectional characters",
                extra={"key": key},
            )
    return dict(metadata)
