"""The per-input checks ComfyUI does not make: upload file names and
`filename_prefix` values that would leave the job's own folders, and inputs a
class does not declare. A node failing one refuses the whole prompt (see
`validator`), since the engine would still run it."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from comfyserve.contracts.workflow_format import RUN_MARK_INPUT
from comfyserve.workflow.validation.catalog import InputSpec, NodeSpec
from comfyserve.workflow.validation.error_items import (
    error_item,
    json_name,
    reserved_input,
)
from comfyserve.workflow.validation.inputs import (
    MAX_LISTED_CHOICES,
    is_asset_ref,
    unwrapped,
)
from comfyserve.workflow.validation.models import (
    ErrorType,
    NodeErrorItem,
    ValidationLimits,
)

__all__ = ["FILENAME_PREFIX", "RESERVED_INPUT", "check_file_value", "undeclared_errors"]

RESERVED_INPUT = RUN_MARK_INPUT
"""The input the executor adds to sink nodes to force fresh outputs."""
FILENAME_PREFIX = "filename_prefix"
"""The input every ComfyUI save node names its output path by."""

_WINDOWS_DRIVE = re.compile(r"[A-Za-z]:")
# ComfyUI reads "name.png [output]" from its output folder (see
# `folder_paths.annotated_filepath`); refused in any spelling.
_FOLDER_ANNOTATION = re.compile(r"\[\s*(?:input|output|temp)\s*\]\s*$", re.IGNORECASE)


def check_file_value(
    node_id: str, spec: InputSpec, value: Any, limits: ValidationLimits
) -> NodeErrorItem | None:
    """What ComfyUI lets through but would reach other tenants' files."""
    if spec.is_upload and not is_asset_ref(value):
        return _check_upload_name(node_id, spec, value)
    if spec.name == FILENAME_PREFIX:
        return _check_filename_prefix(
            node_id, spec.name, unwrapped(value), limits, input_config=spec.raw
        )
    return None


def _check_filename_prefix(
    node_id: str, name: str, value: Any, limits: ValidationLimits, **extra: Any
) -> NodeErrorItem | None:
    # Numbers convert to harmless strings; only a string can hold a path.
    if not isinstance(value, str):
        return None
    problem = _prefix_problem(value, limits.max_filename_prefix_length)
    if problem is None:
        return None
    return error_item(
        ErrorType.INVALID_INPUT_TYPE,
        f"Invalid {name} for node {node_id}",
        f"{name}, {value}, {problem}",
        input_name=name,
        **extra,
        received_value=value,
        exception_message=problem,
        node_id=node_id,
    )


def _prefix_problem(value: str, most: int) -> str | None:
    # ComfyUI joins the prefix to its output folder, which every job shares;
    # a relative subfolder ("renders/cat") is fine, a way out of it is not.
    if not value.strip():
        return "expected a non-empty prefix"
    if len(value) > most:
        return f"at most {most} characters are allowed, got {len(value)}"
    if "\\" in value:
        return "backslashes are not allowed in a prefix"
    if _has_control_characters(value):
        return "control characters are not allowed in a prefix"
    if value.startswith("/") or _WINDOWS_DRIVE.match(value):
        return "absolute paths are not allowed"
    if ".." in value.split("/"):
        return "'..' is not allowed in a prefix"
    return None


def _check_upload_name(
    node_id: str, spec: InputSpec, value: Any
) -> NodeErrorItem | None:
    problem = _upload_name_problem(value)
    if problem is None:
        return None
    many = spec.options is not None and len(spec.options) > MAX_LISTED_CHOICES
    return error_item(
        ErrorType.INVALID_INPUT_TYPE,
        f"Invalid file name for upload input '{spec.name}' of node {node_id}",
        f"{spec.name}, {value}, {problem}",
        input_name=spec.name,
        input_config=None if many else spec.raw,
        received_value=value,
        exception_message=problem,
        node_id=node_id,
    )


def _upload_name_problem(value: Any) -> str | None:
    # A plain name is resolved to one of the tenant's own files (the native
    # `subfolder/name`, with an optional " [input]"-style suffix) and staged
    # into the job's own folder, so ComfyUI never reads the name itself; what
    # could name a path outside any folder is refused here.
    if isinstance(value, Mapping) and "__value__" in value:
        return "a file name must be a plain string, not a wrapped value"
    if not isinstance(value, str) or not value.strip():
        return "expected a non-empty file name"
    if "\\" in value:
        return "backslashes are not allowed in file names"
    if _has_control_characters(value):
        return "control characters are not allowed in file names"
    if value.startswith("/") or _WINDOWS_DRIVE.match(value):
        return "absolute paths are not allowed"
    if value in (".", ".."):
        return f"'{value}' is not a file name"
    name = _FOLDER_ANNOTATION.sub("", value).rstrip()
    if not name:
        return "expected a file name before the folder annotation"
    parts = name.split("/")
    if any(part in (".", "..") for part in parts):
        return "'.' and '..' are not allowed in file names"
    if "" in parts:
        return "empty folder names are not allowed in file names"
    return None


def _has_control_characters(value: str) -> bool:
    return any(ord(char) < 32 or ord(char) == 127 for char in value)


def undeclared_errors(
    node_id: str,
    node_spec: NodeSpec,
    inputs: Mapping[str, Any],
    limits: ValidationLimits,
) -> list[NodeErrorItem]:
    declared = {spec.name for spec in node_spec.validated_inputs()}
    undeclared = [name for name in inputs if name not in declared]
    errors: list[NodeErrorItem] = []
    for name, value in inputs.items():
        if name == RESERVED_INPUT:
            errors.append(reserved_input(node_id, name))
        elif name not in declared:
            error = _check_undeclared(node_id, node_spec, name, value, limits)
            if error is not None:
                errors.append(error)
    most = limits.max_unknown_inputs_per_node
    if len(undeclared) > most:
        errors.append(
            error_item(
                ErrorType.PROMPT_LIMIT_EXCEEDED,
                f"Node {node_id} has {len(undeclared)} inputs that "
                f"{node_spec.class_type} does not declare; at most {most} are "
                f"allowed, the first one too many is '{undeclared[most]}'",
                undeclared[most],
                input_name=undeclared[most],
                node_id=node_id,
                limit="max_unknown_inputs_per_node",
                value=len(undeclared),
            )
        )
    return errors


def _check_undeclared(
    node_id: str,
    node_spec: NodeSpec,
    name: str,
    value: Any,
    limits: ValidationLimits,
) -> NodeErrorItem | None:
    if isinstance(value, list | Mapping):
        problem = (
            "an input the class does not declare may hold only a string, "
            f"number, boolean or null, not {json_name(value)}"
        )
        return error_item(
            ErrorType.INVALID_INPUT_TYPE,
            f"Node {node_id} input '{name}' is not declared by "
            f"{node_spec.class_type}, so it cannot take a link or a structured value",
            f"{name}, {problem}",
            input_name=name,
            node_id=node_id,
            exception_message=problem,
        )
    most = limits.max_unknown_string_length
    if isinstance(value, str) and len(value) > most:
        return error_item(
            ErrorType.PROMPT_LIMIT_EXCEEDED,
            f"Node {node_id} input '{name}' is not declared by "
            f"{node_spec.class_type} and holds {len(value)} characters; at most "
            f"{most} are allowed",
            name,
            input_name=name,
            node_id=node_id,
            limit="max_unknown_string_length",
            value=len(value),
        )
    if name == FILENAME_PREFIX:
        return _check_filename_prefix(node_id, name, value, limits)
    return None
