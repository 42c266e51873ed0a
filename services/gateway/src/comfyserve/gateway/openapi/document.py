"""The finished OpenAPI document: the limits in force, and no answer we never give."""

from __future__ import annotations

import re
from collections.abc import Mapping
from string import Template
from typing import Any

from fastapi import FastAPI

from comfyserve.contracts.limits import GRPC_MAX_MESSAGE_BYTES, MAX_WORKFLOW_BYTES
from comfyserve.gateway.settings import MULTIPART_OVERHEAD_BYTES, Settings

_GENERATED_422 = "#/components/schemas/HTTPValidationError"
_GENERATED_SCHEMAS = ("HTTPValidationError", "ValidationError")
_WHOLE_PLACEHOLDER = re.compile(r"^\$\{(\w+)\}$")


def limits(settings: Settings) -> dict[str, int]:
    """The values `${name}` stands for in descriptions and examples."""
    return {
        "max_body_bytes": settings.max_body_bytes,
        "max_upload_bytes": settings.max_upload_bytes,
        "max_multipart_bytes": settings.max_upload_bytes + MULTIPART_OVERHEAD_BYTES,
        "max_header_bytes": settings.max_header_bytes,
        "max_workflow_bytes": MAX_WORKFLOW_BYTES,
        "grpc_max_message_bytes": GRPC_MAX_MESSAGE_BYTES,
    }


def _substitute(value: Any, values: Mapping[str, int]) -> Any:
    if isinstance(value, dict):
        return {key: _substitute(item, values) for key, item in value.items()}
    if isinstance(value, list):
        return [_substitute(item, values) for item in value]
    if isinstance(value, str):
        # A bare placeholder (an example's `limit_bytes`) becomes the number.
        whole = _WHOLE_PLACEHOLDER.match(value)
        if whole and whole.group(1) in values:
            return values[whole.group(1)]
        return Template(value).safe_substitute(values)
    return value


def _drop_generated_422(schema: dict[str, Any]) -> None:
    """FastAPI's own 422 for any route with parameters: its body is not ours.

    Routes that answer 422 document it with the error body; on the rest it can
    never come (a path parameter that is any string fails no validation).
    """
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            responses = operation.get("responses", {})
            content = responses.get("422", {}).get("content", {})
            ref = content.get("application/json", {}).get("schema", {}).get("$ref")
            if ref == _GENERATED_422:
                del responses["422"]
    schemas = schema.get("components", {}).get("schemas", {})
    for name in _GENERATED_SCHEMAS:
        schemas.pop(name, None)


def finish(schema: dict[str, Any], settings: Settings) -> dict[str, Any]:
    _drop_generated_422(schema)
    finished: dict[str, Any] = _substitute(schema, limits(settings))
    return finished


class GatewayApp(FastAPI):
    """FastAPI, whose OpenAPI document is finished by `finish` once."""

    def __init__(self, settings: Settings, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._settings = settings

    def openapi(self) -> dict[str, Any]:
        if self.openapi_schema is None:
            self.openapi_schema = finish(super().openapi(), self._settings)
        return self.openapi_schema
