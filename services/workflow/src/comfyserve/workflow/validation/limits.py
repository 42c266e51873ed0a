"""The size limits a workflow must keep (`ValidationLimits`): node and input
counts, nesting depth, string length and the whole graph's compact JSON size.
Each check raises `InvalidWorkflowError` (`prompt_limit_exceeded`) naming the
limit, the value, and the node and field where it applies."""

from __future__ import annotations

import json
from typing import Any

from comfyserve.workflow.validation.models import (
    ErrorType,
    InvalidWorkflowError,
    PromptError,
    ValidationLimits,
)

__all__ = [
    "check_depth",
    "check_graph_size",
    "check_input_count",
    "check_node_count",
    "check_string",
]


def check_node_count(count: int, limits: ValidationLimits) -> None:
    if count > limits.max_nodes:
        raise _limit(
            f"Workflow has {count} nodes; at most {limits.max_nodes} are allowed",
            limit="max_nodes",
            value=count,
        )


def check_input_count(node_id: Any, count: int, limits: ValidationLimits) -> None:
    if count > limits.max_inputs_per_node:
        raise _limit(
            f"Node '{node_id}' has {count} inputs; at most "
            f"{limits.max_inputs_per_node} are allowed",
            limit="max_inputs_per_node",
            value=count,
            node_id=node_id,
            field="inputs",
        )


def check_depth(depth: int, node_id: str, field: str, limits: ValidationLimits) -> None:
    """`depth` is how deep the value about to be copied sits, 0 at the input."""
    if depth >= limits.max_value_depth:
        raise _limit(
            f"Node '{node_id}' {field} is nested more than "
            f"{limits.max_value_depth} levels deep",
            limit="max_value_depth",
            value=depth + 1,
            node_id=node_id,
            field=field,
        )


def check_string(
    value: str, node_id: str, field: str, limits: ValidationLimits
) -> None:
    if "\x00" in value:
        # Postgres' JSONB, where the job is kept, cannot hold a NUL.
        raise _limit(
            f"Node '{node_id}' {field} holds a NUL character",
            limit="no_nul_characters",
            value=value.index("\x00"),
            node_id=node_id,
            field=field,
        )
    if len(value) > limits.max_string_length:
        raise _limit(
            f"Node '{node_id}' {field} has a string of {len(value)} characters; "
            f"at most {limits.max_string_length} are allowed",
            limit="max_string_length",
            value=len(value),
            node_id=node_id,
            field=field,
        )


def check_graph_size(graph: dict[str, Any], limits: ValidationLimits) -> None:
    # One serialisation, node by node: the C encoder outruns counting in Python
    # while copying, and the per-node sizes name the node to shrink.
    node_sizes = {
        node_id: _utf8_size(node_id) + 1 + _utf8_size(node)
        for node_id, node in graph.items()
    }
    size = 2 + sum(node_sizes.values()) + len(node_sizes) - 1
    if size <= limits.max_graph_bytes:
        return
    largest = max(node_sizes, key=node_sizes.__getitem__)
    raise _limit(
        f"Workflow is {size} bytes as compact JSON; at most "
        f"{limits.max_graph_bytes} are allowed (the largest node, '{largest}', "
        f"is {node_sizes[largest]} bytes)",
        limit="max_graph_bytes",
        value=size,
        node_id=largest,
        limit_bytes=limits.max_graph_bytes,
    )


def _utf8_size(value: Any) -> int:
    """Bytes of `value` as the gateway and every message carrying a job encode
    the graph: compact JSON, UTF-8, not ASCII-escaped."""
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())


def _limit(
    message: str,
    *,
    limit: str,
    value: int,
    node_id: Any = None,
    field: str | None = None,
    **more: Any,
) -> InvalidWorkflowError:
    extra: dict[str, Any] = {"limit": limit, "value": value, **more}
    if node_id is not None:
        extra["node_id"] = str(node_id)
    if field is not None:
        extra["field"] = field
    return InvalidWorkflowError(
        PromptError(
            type=ErrorType.PROMPT_LIMIT_EXCEEDED,
            message=message,
            details=limit,
            extra_info=extra,
        )
    )
