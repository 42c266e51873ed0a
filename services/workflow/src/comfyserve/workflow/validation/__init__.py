"""Workflow validation: normalise a submitted graph, then check it against the
node catalog the way ComfyUI's `POST /prompt` does. Pure: no I/O."""

from comfyserve.workflow.validation.catalog import (
    InputCategory,
    InputSpec,
    InvalidCatalogError,
    IoType,
    NodeCatalog,
    NodeSpec,
)
from comfyserve.workflow.validation.models import (
    ComfyErrors,
    ErrorType,
    FileInput,
    InvalidWorkflowError,
    NodeError,
    NodeErrorItem,
    PromptError,
    ValidationLimits,
    ValidationResult,
    WorkflowFormatUiError,
)
from comfyserve.workflow.validation.normalise import normalise_workflow
from comfyserve.workflow.validation.validator import validate

__all__ = [
    "ComfyErrors",
    "ErrorType",
    "FileInput",
    "InputCategory",
    "InputSpec",
    "InvalidCatalogError",
    "InvalidWorkflowError",
    "IoType",
    "NodeCatalog",
    "NodeError",
    "NodeErrorItem",
    "NodeSpec",
    "PromptError",
    "ValidationLimits",
    "ValidationResult",
    "WorkflowFormatUiError",
    "normalise_workflow",
    "validate",
]
