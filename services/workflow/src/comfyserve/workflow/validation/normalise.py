"""Turn a submitted workflow into ComfyUI's API-format graph, or reject it."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any

from comfyserve.workflow.validation.error_items import invalid_workflow, json_type
from comfyserve.workflow.validation.limits import (
    check_depth,
    check_graph_size,
    check_input_count,
    check_node_count,
    check_string,
)
from comfyserve.workflow.validation.models import (
    ErrorType,
    InvalidWorkflowError,
    NodeError,
    NodeErrorItem,
    PromptError,
    ValidationLimits,
    WorkflowFormatUiError,
)
from comfyserve.workflow.validation.nodes_form import from_nodes_form

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
        raise invalid_workflow(
            "Workflow must be a JSON object", f"got {json_type(raw)}", field=None
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
        raise invalid_workflow(
            "Workflow 'nodes' must be an object keyed by node id",
            "got a list",
            field="nodes",
        )
    source: Mapping[Any, Any] = raw
    if isinstance(nodes_field, Mapping) and "class_type" not in nodes_field:
        source = from_nodes_form(nodes_field, limits)
    if not source:
        raise invalid_workflow(
            "Workflow has no nodes", "the graph is empty", field=None
        )
    check_node_count(len(source), limits)
    graph: dict[str, Any] = {}
    for node_id, node in source.items():
        checked_id = _node_id(node_id)
        graph[checked_id] = _normalise_node(checked_id, node, limits)
    check_graph_size(graph, limits)
    return graph


def _node_id(node_id: Any) -> str:
    if not isinstance(node_id, str) or not NODE_ID_PATTERN.fullmatch(node_id):
        shown = node_id if isinstance(node_id, str) else json_type(node_id)
        raise invalid_workflow(
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
        raise invalid_workflow(
            f"Node '{node_id}' must be an object",
            f"got {json_type(node)}",
            node_id=node_id,
            field=None,
        )
    class_type = node.get("class_type")
    if not isinstance(class_type, str) or not class_type.strip():
        raise invalid_workflow(
            f"Node '{node_id}' needs a non-empty string 'class_type'",
            f"got {json_type(class_type)}",
            node_id=node_id,
            field="class_type",
        )
    check_string(class_type, node_id, "class_type", limits)
    inputs = node.get("inputs", {})
    if not isinstance(inputs, Mapping):
        raise invalid_workflow(
            f"Node '{node_id}' 'inputs' must be an object",
            f"got {json_type(inputs)}",
            node_id=node_id,
            field="inputs",
        )
    check_input_count(node_id, len(inputs), limits)
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
            raise invalid_workflow(
                f"Node '{node_id}' '_meta' must be an object",
                f"got {json_type(meta)}",
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
        raise invalid_workflow(
            f"Node '{node_id}' has an input whose name is not a non-empty string",
            f"got {json_type(name)}",
            node_id=node_id,
            field="inputs",
        )
    check_string(name, node_id, "inputs", limits)
    return name


def _copy_value(
    value: Any, node_id: str, field: str, limits: ValidationLimits, *, depth: int
) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        raise _NonFiniteNumberError(value)
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        check_string(value, node_id, field, limits)
        return value
    check_depth(depth, node_id, field, limits)
    if isinstance(value, list | tuple):
        return [
            _copy_value(item, node_id, field, limits, depth=depth + 1) for item in value
        ]
    if isinstance(value, Mapping):
        copied: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise invalid_workflow(
                    f"Node '{node_id}' {field} has a non-string object key",
                    f"got {json_type(key)}",
                    node_id=node_id,
                    field=field,
                )
            check_string(key, node_id, field, limits)
            copied[key] = _copy_value(item, node_id, field, limits, depth=depth + 1)
        return copied
    raise invalid_workflow(
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
    error = invalid_workflow(
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
