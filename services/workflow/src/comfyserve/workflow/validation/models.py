"""Validation results and errors, shaped like ComfyUI's `POST /prompt` answers."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from comfyserve.contracts.limits import MAX_WORKFLOW_BYTES

__all__ = [
    "ComfyErrors",
    "ErrorType",
    "FileInput",
    "InvalidWorkflowError",
    "NodeError",
    "NodeErrorItem",
    "PromptError",
    "ValidationLimits",
    "ValidationResult",
    "WorkflowFormatUiError",
]

ComfyErrors = dict[str, Any]
"""`{"error": {...}, "node_errors": {...}}`, ComfyUI's /prompt error shape."""


class ErrorType(StrEnum):
    """Every `type` this package emits, top-level or per node."""

    # Per-node, as ComfyUI names them.
    REQUIRED_INPUT_MISSING = "required_input_missing"
    BAD_LINKED_INPUT = "bad_linked_input"
    RETURN_TYPE_MISMATCH = "return_type_mismatch"
    INVALID_INPUT_TYPE = "invalid_input_type"
    VALUE_SMALLER_THAN_MIN = "value_smaller_than_min"
    VALUE_BIGGER_THAN_MAX = "value_bigger_than_max"
    VALUE_NOT_IN_LIST = "value_not_in_list"
    EXCEPTION_DURING_VALIDATION = "exception_during_validation"
    # Both top-level and per node.
    MISSING_NODE_TYPE = "missing_node_type"
    NODE_NOT_ALLOWED = "node_not_allowed"
    DEPENDENCY_CYCLE = "dependency_cycle"
    PROMPT_LIMIT_EXCEEDED = "prompt_limit_exceeded"
    # Top-level only.
    PROMPT_NO_OUTPUTS = "prompt_no_outputs"
    PROMPT_OUTPUTS_FAILED_VALIDATION = "prompt_outputs_failed_validation"
    INVALID_PROMPT = "invalid_prompt"
    WORKFLOW_FORMAT_UI = "workflow_format_ui"


class _ErrorBody(BaseModel):
    model_config = ConfigDict(frozen=True)

    type: ErrorType
    message: str
    details: str = ""
    extra_info: dict[str, Any] = Field(default_factory=dict)

    def to_comfy(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


class PromptError(_ErrorBody):
    """The top-level `error` object of a rejected prompt."""


class NodeErrorItem(_ErrorBody):
    """One entry of `node_errors[<id>].errors`."""


class NodeError(BaseModel):
    """Everything wrong with one node, keyed by node id in `node_errors`."""

    model_config = ConfigDict(frozen=True)

    errors: list[NodeErrorItem]
    dependent_outputs: list[str]
    class_type: str

    def to_comfy(self) -> dict[str, Any]:
        return {
            "errors": [item.to_comfy() for item in self.errors],
            "dependent_outputs": list(self.dependent_outputs),
            "class_type": self.class_type,
        }


def _node_errors_to_comfy(node_errors: dict[str, NodeError]) -> dict[str, Any]:
    return {node_id: entry.to_comfy() for node_id, entry in node_errors.items()}


class FileInput(BaseModel):
    """An upload input (`LoadImage.image`, ...) that names its file by value."""

    model_config = ConfigDict(frozen=True)

    node_id: str
    input_name: str


class ValidationResult(BaseModel):
    """Outcome of validating a graph.

    As in ComfyUI, a prompt is accepted (`ok`) when at least one output node
    validates; `node_errors` may then still list the nodes whose outputs are
    dropped, and `output_nodes` names the outputs that validated. An error
    ComfyUI would not raise itself refuses the whole prompt instead (see the
    validator's module docstring).

    `file_inputs`, for an accepted prompt, lists every upload input holding a
    plain file name (not a link) in the nodes that any output node depends
    on, including outputs that failed validation here, since the engine
    validates again and may still run them; nodes no output needs never run
    and are left out. The executor keeps these files in the job's own folder.
    """

    model_config = ConfigDict(frozen=True)

    ok: bool
    error: PromptError | None = None
    node_errors: dict[str, NodeError] = Field(default_factory=dict)
    output_nodes: list[str] = Field(default_factory=list)
    file_inputs: list[FileInput] = Field(default_factory=list)

    def to_comfy(self) -> ComfyErrors:
        """`{"error": ..., "node_errors": ...}`; no `error` key when accepted."""
        body: dict[str, Any] = {}
        if self.error is not None:
            body["error"] = self.error.to_comfy()
        body["node_errors"] = _node_errors_to_comfy(self.node_errors)
        return body


@dataclass(frozen=True, slots=True)
class ValidationLimits:
    """Bounds on what a submitted graph may contain."""

    max_nodes: int = 500
    max_inputs_per_node: int = 256
    max_string_length: int = 20_000
    max_value_depth: int = 16
    max_graph_bytes: int = MAX_WORKFLOW_BYTES
    """Size of the normalised graph as compact (ASCII-escaped) JSON, the form
    every message that carries a job holds it in."""
    max_unknown_inputs_per_node: int = 16
    """Inputs a node's class declares neither required nor optional."""
    max_unknown_string_length: int = 1024
    max_filename_prefix_length: int = 200
    max_image_pixels: int = 4096 * 4096
    """Width × height a node may ask for (an empty latent, a scale)."""
    max_steps: int = 500
    max_batch_size: int = 64


class InvalidWorkflowError(ValueError):
    """The submitted workflow is not a usable graph at all.

    `node_errors` names the node at fault when one of its input values is the
    problem; no catalog has been consulted yet, so no outputs are known to
    depend on it.
    """

    def __init__(
        self, error: PromptError, node_errors: dict[str, NodeError] | None = None
    ) -> None:
        super().__init__(f"{error.message}: {error.details}")
        self.error = error
        self.node_errors = node_errors or {}

    def to_comfy(self) -> ComfyErrors:
        return {
            "error": self.error.to_comfy(),
            "node_errors": _node_errors_to_comfy(self.node_errors),
        }


class WorkflowFormatUiError(InvalidWorkflowError):
    """The workflow is a UI export, not the API format ComfyUI executes."""
