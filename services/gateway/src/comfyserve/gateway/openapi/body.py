"""The body of every error answer, as the OpenAPI document describes it.

`errors.py` renders these bodies; a new error field is declared here too.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import SkipJsonSchema


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
    required_scopes: list[str] | SkipJsonSchema[None] = Field(
        default=None,
        description=(
            "`insufficient_scope` (403): the scope the route needs (it takes any "
            "one of several)."
        ),
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
