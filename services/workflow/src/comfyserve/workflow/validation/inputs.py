"""ComfyUI's own checks of one declared input: a link's target, output and
type, and a widget value's conversion, range and choices. An asset reference
stands for a file name here."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any, TypeGuard

from comfyserve.contracts.workflow_format import ASSET_TYPE
from comfyserve.workflow.validation.catalog import (
    ANY_TYPE,
    COMBO,
    InputSpec,
    IoType,
    NodeSpec,
)
from comfyserve.workflow.validation.error_items import (
    conversion_error,
    error_item,
    json_name,
)
from comfyserve.workflow.validation.graph import is_link
from comfyserve.workflow.validation.models import ErrorType, NodeErrorItem

__all__ = [
    "MAX_LISTED_CHOICES",
    "check_link",
    "check_widget",
    "is_asset_ref",
    "unwrapped",
]

MAX_LISTED_CHOICES = 20
"""Longer lists of choices are not repeated in an error, as ComfyUI does."""
_BAD_LINK_MESSAGE = "Bad linked input, must be a length-2 list of [node_id, slot_index]"


def check_link(
    node_id: str, spec: InputSpec, link: list[Any], sources: Mapping[str, NodeSpec]
) -> NodeErrorItem | None:
    """`sources` holds the spec of every node in the graph, by node id."""
    if not is_link(link):
        return error_item(
            ErrorType.BAD_LINKED_INPUT,
            _BAD_LINK_MESSAGE,
            spec.name,
            input_name=spec.name,
            input_config=spec.raw,
            received_value=link,
        )
    target, index = link
    if target not in sources:
        return error_item(
            ErrorType.EXCEPTION_DURING_VALIDATION,
            f"Node {node_id} links to node {target}, which does not exist",
            spec.name,
            input_name=spec.name,
            input_config=spec.raw,
            linked_node=link,
            exception_type="KeyError",
            exception_message=repr(target),
            traceback=[],
        )
    source = sources[target]
    if not 0 <= index < len(source.outputs):
        return error_item(
            ErrorType.BAD_LINKED_INPUT,
            f"Bad linked input: output index {index} of node {target} "
            f"({source.class_type}) does not exist; it has "
            f"{len(source.outputs)} output(s)",
            spec.name,
            input_name=spec.name,
            input_config=spec.raw,
            received_value=link,
        )
    received = source.outputs[index]
    if not _types_match(received, spec.io_type):
        return error_item(
            ErrorType.RETURN_TYPE_MISMATCH,
            "Return type mismatch between linked nodes",
            f"{spec.name}, received_type({_type_label(received)}) "
            f"mismatch input_type({_type_label(spec.io_type)})",
            input_name=spec.name,
            input_config=spec.raw,
            received_type=_jsonable_type(received),
            linked_node=link,
        )
    return None


def check_widget(spec: InputSpec, value: Any) -> NodeErrorItem | None:
    value = unwrapped(value)
    if is_asset_ref(value):
        return _check_asset_ref(spec, value)
    converter = _CONVERTERS.get(spec.type_name)
    if converter is not None:
        try:
            value = converter(value)
        except (TypeError, ValueError, OverflowError) as exc:
            return conversion_error(spec, value, str(exc))
    if _is_number(value):
        error = _check_range(spec, value)
        if error is not None:
            return error
    # An upload's choices are the engine's input folder, filled at run time;
    # `safety.check_file_value` checks its name instead.
    if spec.options is not None and not spec.is_upload:
        return _check_choice(spec, value)
    return None


def _check_range(spec: InputSpec, value: float) -> NodeErrorItem | None:
    low, high = spec.config.get("min"), spec.config.get("max")
    if _is_number(low) and value < low:
        return error_item(
            ErrorType.VALUE_SMALLER_THAN_MIN,
            f"Value {value} smaller than min of {low}",
            spec.name,
            input_name=spec.name,
            input_config=spec.raw,
            received_value=value,
        )
    if _is_number(high) and value > high:
        return error_item(
            ErrorType.VALUE_BIGGER_THAN_MAX,
            f"Value {value} bigger than max of {high}",
            spec.name,
            input_name=spec.name,
            input_config=spec.raw,
            received_value=value,
        )
    return None


def _check_choice(spec: InputSpec, value: Any) -> NodeErrorItem | None:
    options = spec.options or ()
    if spec.config.get("multiselect") is True and isinstance(value, list):
        missing = [choice for choice in value if choice not in options]
        if not missing:
            return None
        value = missing[0]
    elif value in options:
        return None
    many = len(options) > MAX_LISTED_CHOICES
    listed = f"(list of length {len(options)})" if many else str(list(options))
    return error_item(
        ErrorType.VALUE_NOT_IN_LIST,
        "Value not in list",
        f"{spec.name}: '{value}' not in {listed}",
        input_name=spec.name,
        input_config=None if many else spec.raw,
        received_value=value,
    )


def unwrapped(value: Any) -> Any:
    # Newer frontends wrap list-valued widgets so they are not read as links.
    if isinstance(value, Mapping) and "__value__" in value:
        return value["__value__"]
    return value


def is_asset_ref(value: Any) -> bool:
    return isinstance(value, Mapping) and value.get("__type") == ASSET_TYPE


def _check_asset_ref(spec: InputSpec, ref: Mapping[str, Any]) -> NodeErrorItem | None:
    # The reference is replaced by the staged file's name before the engine
    # sees the graph, so it stands for a string whose choices are not known yet.
    info = ref.get("info")
    file_id = info.get("id") if isinstance(info, Mapping) else None
    if not isinstance(file_id, str) or not file_id:
        problem = "an asset reference needs a non-empty string info.id"
    elif spec.type_name in (COMBO, "STRING", ANY_TYPE):
        return None
    else:
        problem = f"an asset reference stands for a file name, not a {spec.type_name}"
    return conversion_error(spec, dict(ref), problem)


def _to_int(value: Any) -> int:
    if isinstance(value, bool):
        raise TypeError("a boolean is not an integer")
    # As ComfyUI does: numeric strings convert, floats truncate.
    return int(value)


def _to_float(value: Any) -> float:
    if isinstance(value, bool):
        raise TypeError("a boolean is not a number")
    converted = float(value)
    if not math.isfinite(converted):
        raise ValueError(f"{value} is not a finite number")
    return converted


def _to_str(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool | int | float):
        return str(value)
    raise TypeError(f"expected a string, got {json_name(value)}")


def _to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise TypeError(f"expected true or false, got {json_name(value)}")


_CONVERTERS: Mapping[str, Callable[[Any], Any]] = {
    "INT": _to_int,
    "FLOAT": _to_float,
    "STRING": _to_str,
    "BOOLEAN": _to_bool,
}


def _types_match(received: IoType, expected: IoType) -> bool:
    if received == expected or ANY_TYPE in (received, expected):
        return True
    if isinstance(received, str) and isinstance(expected, str):
        # Newer builds declare unions as "IMAGE,MASK"; any overlap connects.
        got = {part.strip() for part in received.split(",")}
        wanted = {part.strip() for part in expected.split(",")}
        return bool(got & wanted)
    # A combo output feeding a combo input: the choice is checked when it runs.
    return _is_combo_type(received) and _is_combo_type(expected)


def _is_combo_type(io_type: IoType) -> bool:
    return isinstance(io_type, tuple) or io_type == COMBO


def _type_label(io_type: IoType) -> str:
    return COMBO if isinstance(io_type, tuple) else io_type


def _jsonable_type(io_type: IoType) -> Any:
    return list(io_type) if isinstance(io_type, tuple) else io_type


def _is_number(value: Any) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)
