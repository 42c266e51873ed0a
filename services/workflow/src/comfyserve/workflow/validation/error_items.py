"""How validation errors are shaped: ComfyUI's node error items and prompt
errors, the rejections of a whole graph built from them, and the refusal of a
workflow that is not a graph at all."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from comfyserve.workflow.validation.catalog import InputSpec
from comfyserve.workflow.validation.graph import Graph, closure
from comfyserve.workflow.validation.models import (
    ErrorType,
    InvalidWorkflowError,
    NodeError,
    NodeErrorItem,
    PromptError,
    ValidationResult,
)

__all__ = [
    "as_prompt_error",
    "class_error",
    "conversion_error",
    "cycle_rejection",
    "detail_lines",
    "error_item",
    "invalid_workflow",
    "json_name",
    "json_type",
    "node_errors",
    "rejected",
    "required_missing",
    "reserved_input",
]


def error_item(
    kind: ErrorType, message: str, details: str, **extra: Any
) -> NodeErrorItem:
    return NodeErrorItem(type=kind, message=message, details=details, extra_info=extra)


def class_error(
    kind: ErrorType, node_id: str, node: Mapping[str, Any]
) -> NodeErrorItem:
    class_type: str = node["class_type"]
    meta = node.get("_meta")
    title = meta.get("title") if isinstance(meta, Mapping) else None
    title = title if isinstance(title, str) and title else class_type
    if kind is ErrorType.MISSING_NODE_TYPE:
        message = f"Node '{title}' not found. The custom node may not be installed."
    else:
        message = f"Node '{title}' of type '{class_type}' is not allowed here."
    return error_item(
        kind,
        message,
        f"Node ID '#{node_id}'",
        node_id=node_id,
        class_type=class_type,
        node_title=title,
    )


def required_missing(spec: InputSpec) -> NodeErrorItem:
    return error_item(
        ErrorType.REQUIRED_INPUT_MISSING,
        "Required input is missing",
        spec.name,
        input_name=spec.name,
    )


def reserved_input(node_id: str, name: str) -> NodeErrorItem:
    problem = f"the input name '{name}' is reserved for the executor"
    return error_item(
        ErrorType.INVALID_INPUT_TYPE,
        f"Node {node_id} input '{name}' is reserved",
        f"{name}, {problem}",
        input_name=name,
        node_id=node_id,
        exception_message=problem,
    )


def conversion_error(spec: InputSpec, value: Any, problem: str) -> NodeErrorItem:
    return error_item(
        ErrorType.INVALID_INPUT_TYPE,
        f"Failed to convert an input value to a {spec.type_name} value",
        f"{spec.name}, {value}, {problem}",
        input_name=spec.name,
        input_config=spec.raw,
        received_value=value,
        exception_message=problem,
    )


def as_prompt_error(item: NodeErrorItem) -> PromptError:
    return PromptError.model_validate(item.model_dump())


def rejected(error: PromptError, node_errors: dict[str, NodeError]) -> ValidationResult:
    return ValidationResult(ok=False, error=error, node_errors=node_errors)


def detail_lines(entries: Iterable[NodeError]) -> str:
    return "\n".join(
        f"{item.message}: {item.details}" for entry in entries for item in entry.errors
    )


def node_errors(
    graph: Graph,
    items: Mapping[str, NodeErrorItem],
    outputs: list[str],
    upstream: Mapping[str, list[str]],
) -> dict[str, NodeError]:
    """One error per node, each naming the outputs that depend on its node."""
    closures = {
        output: set(closure(output, upstream.__getitem__)) for output in outputs
    }
    return {
        node_id: NodeError(
            errors=[item],
            dependent_outputs=[o for o in outputs if node_id in closures[o]],
            class_type=graph[node_id]["class_type"],
        )
        for node_id, item in items.items()
    }


def cycle_rejection(
    graph: Graph,
    cycles: list[list[str]],
    outputs: list[str],
    upstream: Mapping[str, list[str]],
) -> ValidationResult:
    items: dict[str, NodeErrorItem] = {}
    for cycle in cycles:
        members = ", ".join(f"'{node_id}'" for node_id in cycle)
        for node_id in cycle:
            items[node_id] = error_item(
                ErrorType.DEPENDENCY_CYCLE,
                "Dependency cycle detected",
                f"Node ID '#{node_id}' is part of a cycle of nodes {members}",
                node_id=node_id,
                cycle=cycle,
            )
    details = "\n".join(
        "Nodes " + ", ".join(f"'{node_id}'" for node_id in cycle) + " form a cycle"
        for cycle in cycles
    )
    return rejected(
        PromptError(
            type=ErrorType.DEPENDENCY_CYCLE,
            message="Dependency cycle detected",
            details=details,
            extra_info={"cycles": cycles},
        ),
        node_errors(graph, items, outputs, upstream),
    )


def json_name(value: Any) -> str:
    """What `value` is, as the validator's messages name it ("not an object")."""
    if value is None:
        return "null"
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, list | tuple):
        return "an array"
    return type(value).__name__


def invalid_workflow(
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


def json_type(value: Any) -> str:
    """The JSON type of `value`, as normalisation messages name it ("got object")."""
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
