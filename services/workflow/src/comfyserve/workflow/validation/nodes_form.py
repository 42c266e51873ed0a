"""The `{"nodes": {id: {"class_type", "inputs": [{"name", "type", "value"},
...]}}}` form of a workflow, turned into API-format nodes."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from comfyserve.workflow.validation.error_items import invalid_workflow, json_type
from comfyserve.workflow.validation.limits import check_input_count, check_node_count
from comfyserve.workflow.validation.models import ValidationLimits

__all__ = ["from_nodes_form"]


def from_nodes_form(
    nodes: Mapping[Any, Any], limits: ValidationLimits
) -> dict[Any, Any]:
    check_node_count(len(nodes), limits)
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
    check_input_count(node_id, len(entries), limits)
    inputs: dict[str, Any] = {}
    for index, entry in enumerate(entries):
        field = f"inputs[{index}]"
        if not isinstance(entry, Mapping):
            raise invalid_workflow(
                f"Node '{node_id}' input #{index} must be an object "
                "with 'name' and 'value'",
                f"got {json_type(entry)}",
                node_id=node_id,
                field=field,
            )
        name = entry.get("name")
        if not isinstance(name, str) or not name:
            raise invalid_workflow(
                f"Node '{node_id}' input #{index} needs a non-empty string 'name'",
                f"got {json_type(name)}",
                node_id=node_id,
                field=f"{field}.name",
            )
        if "value" not in entry:
            raise invalid_workflow(
                f"Node '{node_id}' input '{name}' has no 'value'",
                name,
                node_id=node_id,
                field=f"{field}.value",
            )
        if name in inputs:
            raise invalid_workflow(
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
