"""Turn a submitted workflow into ComfyUI's API-format graph, or reject it."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any

from comfyserve.workflow.validation.models import (
    ErrorType,
    InvalidWorkflowError,
    NodeError,
    NodeErrorItem,
    PromptError,
    ValidationLimits,
    WorkflowFormatUiError,
)

__all__ = ["NODE_ID_PATTERN", "normalise_workflow"]

NODE_ID_PATTERN = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
"""Node ids we accept (full match); ComfyUI uses digits, and `12:5` in subgraphs."""

_UI_FORMAT_MESSAGE = (
    "This is a ComfyUI UI export (it has a 'nodes' list and 'links'), not an "
    "API-format workflow. Open it in ComfyUI and export it with "
    '"Save (API Format)".'
)


def normalise_workflow(
    raw: Any, limits: ValidationLimits | None = None
) -> dict[str, Any]:
    """The API-format graph `{id: {"class_type", "inputs", "_meta"?}}` of `raw`.

    Accepts the API format itself and the `{"nodes": {id: {"class_type",
    "inputs": [{"name", "type", "value"}, ...]}}}` form. Raises
    `WorkflowFormatUiError` for a UI export and `InvalidWorkflowError` for
    anything else that is not a graph of JSON values (a non-finite number
    included) or exceeds `limits`, the whole graph's compact JSON size among
    them.
    """
    limits = limits or ValidationLimits()
    if not isinstance(raw, Mapping):
        raise _invalid(
            "Workflow must be a JSON object", f"got {_json_type(raw)}", field=None
        )
    nodes_field = raw.get("nodes")
    if isinstance(nodes_field, list):
        if "links" in raw:
            raise WorkflowFormatUiError(
                PromptError(
                    type=ErrorType.WORKFLOW_FORMAT_UI,
                    message=_UI_FORMAT_MESSAGE,
                    details="top-level 'nodes' is a list and 'links' is present",
                    extra_info={"format": "ui"},
                )
            )
        raise _invalid(
            "Workflow 'nodes' must be an object keyed by node id",
            "got a list",
            field="nodes",
        )
    source: Mapping[Any, Any] = raw
    if isinstance(nodes_field, Mapping) and "class_type" not in nodes_field:
        source = _from_nodes_form(nodes_field, limits)
    if not source:
        raise _invalid("Workflow has no nodes", "the graph is empty", field=None)
    if len(source) > limits.max_nodes:
        raise _limit(
            f"Workflow has {len(source)} nodes; at most {limits.max_nodes} are allowed",
            limit="max_nodes",
            value=len(source),
        )
    graph: dict[str, Any] = {}
    for node_id, node in source.items():
        checked_id = _node_id(node_id)
        graph[checked_id] = _normalise_node(checked_id, node, limits)
    _check_graph_size(graph, limits)
    return graph


def _from_nodes_form(
    nodes: Mapping[Any, Any], limits: ValidationLimits
) -> dict[Any, Any]:
    if len(nodes) > limits.max_nodes:
        raise _limit(
            f"Workflow has {len(nodes)} nodes; at most {limits.max_nodes} are allowed",
            limit="max_nodes",
            value=len(nodes),
        )
    node_ids = {str(node_id) for node_id in nodes}
    converted: dict[Any, Any] = {}
    for node_id, node in nodes.items():
        if isinstance(node, Mapping) and isinstance(node.get("inputs"), list):
            inputs = _inputs_from_list(node_id, node["inputs"], node_ids, limits)
            node = {**node, "inputs": inputs}
        converted[node_id] = node
    return converted


def _inputs_from_list(
    node_id: Any, entries: list[Any], node_ids: set[str], limits: ValidationLimits
) -> dict[str, Any]:
    if len(entries) > limits.max_inputs_per_node:
        raise _too_many_inputs(node_id, len(entries), limits)
    inputs: dict[str, Any] = {}
    for index, entry in enumerate(entries):
        field = f"inputs[{index}]"
        if not isinstance(entry, Mapping):
            raise _invalid(
                f"Node '{node_id}' input #{index} must be an object "
                "with 'name' and 'value'",
                f"got {_json_type(entry)}",
                node_id=node_id,
                field=field,
            )
        name = entry.get("name")
        if not isinstance(name, str) or not name:
            raise _invalid(
                f"Node '{node_id}' input #{index} needs a non-empty string 'name'",
                f"got {_json_type(name)}",
                node_id=node_id,
                field=f"{field}.name",
            )
        if "value" not in entry:
            raise _invalid(
                f"Node '{node_id}' input '{name}' has no 'value'",
                name,
                node_id=node_id,
                field=f"{field}.value",
            )
        if name in inputs:
            raise _invalid(
                f"Node '{node_id}' input '{name}' is given twice",
                name,
                node_id=node_id,
                field=f"{field}.name",
            )
        inputs[name] = _seed_value(entry["value"], node_ids)
    return inputs


def _seed_value(value: Any, node_ids: set[str]) -> Any:
    # This form lets a link name its node with a number; the API format wants
    # the node id as a string.
    if (
        isinstance(value, list)
        and len(value) == 2
        and isinstance(value[0], int)
        and not isinstance(value[0], bool)
        and str(value[0]) in node_ids
    ):
        return [str(value[0]), value[1]]
    return value


def _node_id(node_id: Any) -> str:
    if not isinstance(node_id, str) or not NODE_ID_PATTERN.fullmatch(node_id):
        shown = node_id if isinstance(node_id, str) else _json_type(node_id)
        raise _invalid(
            f"Invalid node id '{str(shown)[:80]}'",
            "node ids are 1-64 characters of letters, digits, '_', '.', ':', '-'",
            node_id=str(shown)[:80],
            field=None,
        )
    return node_id


def _normalise_node(
    node_id: str, node: Any, limits: ValidationLimits
) -> dict[str, Any]:
    if not isinstance(node, Mapping):
        raise _invalid(
            f"Node '{node_id}' must be an object",
            f"got {_json_type(node)}",
            node_id=node_id,
            field=None,
        )
    class_type = node.get("class_type")
    if not isinstance(class_type, str) or not class_type.strip():
        raise _invalid(
            f"Node '{node_id}' needs a non-empty string 'class_type'",
            f"got {_json_type(class_type)}",
            node_id=node_id,
            field="class_type",
        )
    _check_string(class_type, node_id, "class_type", limits)
    inputs = node.get("inputs", {})
    if not isinstance(inputs, Mapping):
        raise _invalid(
            f"Node '{node_id}' 'inputs' must be an object",
            f"got {_json_type(inputs)}",
            node_id=node_id,
            field="inputs",
        )
    if len(inputs) > limits.max_inputs_per_node:
        raise _too_many_inputs(node_id, len(inputs), limits)
    normalised: dict[str, Any] = {"class_type": class_type, "inputs": {}}
    for name, value in inputs.items():
        field = f"inputs.{_input_name(node_id, name, limits)}"
        try:
            normalised["inputs"][name] = _copy_value(
                value, node_id, field, limits, depth=0
            )
        except _NonFiniteNumberError as error:
            raise _non_finite(node_id, field, error.value, class_type, name) from None
    meta = node.get("_meta")
    if meta is not None:
        if not isinstance(meta, Mapping):
            raise _invalid(
                f"Node '{node_id}' '_meta' must be an object",
                f"got {_json_type(meta)}",
                node_id=node_id,
                field="_meta",
            )
        try:
            normalised["_meta"] = _copy_value(meta, node_id, "_meta", limits, depth=0)
        except _NonFiniteNumberError as error:
            raise _non_finite(node_id, "_meta", error.value) from None
    return normalised


def _input_name(node_id: str, name: Any, limits: ValidationLimits) -> str:
    if not isinstance(name, str) or not name:
        raise _invalid(
            f"Node '{node_id}' has an input whose name is not a non-empty string",
            f"got {_json_type(name)}",
            node_id=node_id,
            field="inputs",
        )
    _check_string(name, node_id, "inputs", limits)
    return name


def _copy_value(
    value: Any, node_id: str, field: str, limits: ValidationLimits, *, depth: int
) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        raise _NonFiniteNumberError(value)
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        _check_string(value, node_id, field, limits)
        return value
    if depth >= limits.max_value_depth:
        raise _limit(
            f"Node '{node_id}' {field} is nested more than "
            f"{limits.max_value_depth} levels deep",
            limit="max_value_depth",
            value=depth + 1,
            node_id=node_id,
            field=field,
        )
    if isinstance(value, list | tuple):
        return [
            _copy_value(item, node_id, field, limits, depth=depth + 1) for item in value
        ]
    if isinstance(value, Mapping):
        copied: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise _invalid(
                    f"Node '{node_id}' {field} has a non-string object key",
                    f"got {_json_type(key)}",
                    node_id=node_id,
                    field=field,
                )
            _check_string(key, node_id, field, limits)
            copied[key] = _copy_value(item, node_id, field, limits, depth=depth + 1)
        return copied
    raise _invalid(
        f"Node '{node_id}' {field} is not a JSON value",
        f"got {type(value).__name__}",
        node_id=node_id,
        field=field,
    )


class _NonFiniteNumberError(ValueError):
    """Raised deep in a value; the node level turns it into the refusal."""

    def __init__(self, value: float) -> None:
        super().__init__(value)
        self.value = value


def _non_finite(
    node_id: str,
    field: str,
    value: float,
    class_type: str | None = None,
    input_name: str | None = None,
) -> InvalidWorkflowError:
    # 1e400 parses to inf, and Python's json module lets NaN and Infinity
    # through; neither is JSON that any other service or the engine can read.
    literal = json.dumps(value)
    where = f"input '{input_name}'" if input_name is not None else f"'{field}'"
    error = _invalid(
        f"Node '{node_id}' {where} holds {literal}; numbers must be finite",
        f"{field}: {literal}",
        node_id=node_id,
        field=field,
    )
    if class_type is None or input_name is None:
        return error
    item = NodeErrorItem(
        type=ErrorType.INVALID_INPUT_TYPE,
        message=f"Node {node_id} input '{input_name}' is not a finite number",
        details=f"{input_name}, {literal}, numbers must be finite",
        extra_info={
            "input_name": input_name,
            "node_id": node_id,
            "exception_message": f"{literal} is not a finite number",
        },
    )
    entry = NodeError(errors=[item], dependent_outputs=[], class_type=class_type)
    return InvalidWorkflowError(error.error, {node_id: entry})


def _check_graph_size(graph: dict[str, Any], limits: ValidationLimits) -> None:
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


def _check_string(
    value: str, node_id: str, field: str, limits: ValidationLimits
) -> None:
    if len(value) > limits.max_string_length:
        raise _limit(
            f"Node '{node_id}' {field} has a string of {len(value)} characters; "
            f"at most {limits.max_string_length} are allowed",
            limit="max_string_length",
            value=len(value),
            node_id=node_id,
            field=field,
        )


def _too_many_inputs(
    node_id: Any, count: int, limits: ValidationLimits
) -> InvalidWorkflowError:
    return _limit(
        f"Node '{node_id}' has {count} inputs; at most "
        f"{limits.max_inputs_per_node} are allowed",
        limit="max_inputs_per_node",
        value=count,
        node_id=node_id,
        field="inputs",
    )


def _invalid(
    message: str, details: str, *, field: str | None, node_id: Any = None
) -> InvalidWorkflowError:
    extra: dict[str, Any] = {}
    if node_id is not None:
        extra["node_id"] = str(node_id)
    if field is not None:
        extra["field"] = field
    return InvalidWorkflowError(
        PromptError(
            type=ErrorType.INVALID_PROMPT,
            message=message,
            details=details,
            extra_info=extra,
        )
    )


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


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list | tuple):
        return "array"
    if isinstance(value, Mapping):
        return "object"
    return type(value).__name__
