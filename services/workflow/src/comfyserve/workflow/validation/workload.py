"""Bounds on how much work one node may ask of a GPU: image width × height,
sampling steps and batch size. ComfyUI's own maxima are far past what a shared
worker should take (16384 × 16384, 10000 steps, a batch of 4096), so one
request could hold a GPU for hours or exhaust its memory. Only literal values
are checked; a linked value is computed at run time and bounded by the job's
timeout."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeGuard

from comfyserve.workflow.validation.error_items import error_item
from comfyserve.workflow.validation.models import (
    ErrorType,
    NodeErrorItem,
    ValidationLimits,
)

__all__ = ["workload_errors"]


def workload_errors(
    node_id: str, inputs: Mapping[str, Any], limits: ValidationLimits
) -> list[NodeErrorItem]:
    errors = [
        _limit(
            node_id,
            name,
            f"Node {node_id} input '{name}' is {value}; at most {most} "
            "are allowed here",
            limit=limit,
            value=value,
        )
        for name, most, limit in (
            ("steps", limits.max_steps, "max_steps"),
            ("batch_size", limits.max_batch_size, "max_batch_size"),
        )
        if _is_int(value := inputs.get(name)) and value > most
    ]
    width, height = inputs.get("width"), inputs.get("height")
    if _is_int(width) and _is_int(height) and width * height > limits.max_image_pixels:
        errors.append(
            _limit(
                node_id,
                "width",
                f"Node {node_id} asks for a {width} × {height} image, "
                f"{width * height} pixels; at most {limits.max_image_pixels} "
                "are allowed here",
                limit="max_image_pixels",
                value=width * height,
            )
        )
    return errors


def _limit(
    node_id: str, name: str, message: str, *, limit: str, value: int
) -> NodeErrorItem:
    return error_item(
        ErrorType.PROMPT_LIMIT_EXCEEDED,
        message,
        name,
        input_name=name,
        node_id=node_id,
        limit=limit,
        value=value,
    )


def _is_int(value: Any) -> TypeGuard[int]:
    # A bool is an int to Python, never a size to ComfyUI.
    return isinstance(value, int) and not isinstance(value, bool)
