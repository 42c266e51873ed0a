"""ComfyUI's prompt validation, replayed against a node catalog.

The checks, their order and the error shapes follow ComfyUI's
`execution.validate_prompt`, so a client gets the `node_errors` native ComfyUI
would give. Departures, all stricter or clearer: a link to a missing node or
output is reported by name instead of as a raw `KeyError`/`IndexError`,
booleans are not numbers, non-finite floats are refused, upload inputs are
checked for a plain file name (no subfolder, no `[output]`-style folder
annotation) instead of against the engine's input folder, any string input
named `filename_prefix` (declared or not) must stay a relative path inside
the output folder, and unknown classes, disallowed classes and cycles are
refused anywhere in the graph.

Inputs a class does not declare (hidden ones included) are checked too, after
the declared ones: ComfyUI drops their plain values, but reads any list there
as a link (crashing on a malformed one) and hands a linked value to the node
as an unexpected keyword. They may hold only a scalar, are bounded in number
and length (`prompt_limit_exceeded`, per node), and `comfyserve_run` is
refused as the executor's own.

A node error ComfyUI would not raise itself (upload file names,
`filename_prefix`, the undeclared-input checks) refuses the whole prompt,
even when another output validates: the service hands the engine the whole
graph, and the engine runs every output it finds valid, so an output dropped
here would still run there.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeGuard

from comfyserve.contracts.workflow_format import ASSET_TYPE, RUN_MARK_INPUT
from comfyserve.workflow.validation.catalog import (
    ANY_TYPE,
    COMBO,
    InputCategory,
    InputSpec,
    IoType,
    NodeCatalog,
    NodeSpec,
)
from comfyserve.workflow.validation.models import (
    ErrorType,
    FileInput,
    NodeError,
    NodeErrorItem,
    PromptError,
    ValidationLimits,
    ValidationResult,
)

__all__ = ["FILENAME_PREFIX", "RESERVED_INPUT", "validate"]

RESERVED_INPUT = RUN_MARK_INPUT
"""The input the executor adds to sink nodes to force fresh outputs."""
FILENAME_PREFIX = "filename_prefix"
"""The input every ComfyUI save node names its output path by."""

_MAX_LISTED_CHOICES = 20
_WINDOWS_DRIVE = re.compile(r"[A-Za-z]:")
# ComfyUI reads "name.png [output]" from its output folder (see
# `folder_paths.annotated_filepath`); refused in any spelling.
_FOLDER_ANNOTATION = re.compile(r"\[\s*(?:input|output|temp)\s*\]\s*$", re.IGNORECASE)
_BAD_LINK_MESSAGE = "Bad linked input, must be a length-2 list of [node_id, slot_index]"

Graph = Mapping[str, Mapping[str, Any]]


def validate(
    graph: Graph,
    catalog: NodeCatalog,
    allowlist: frozenset[str] | None = None,
    *,
    limits: ValidationLimits | None = None,
) -> ValidationResult:
    """Validate an API-format graph (as `normalise_workflow` returns it).

    `allowlist`, when given, is the set of class types this deployment runs.
    """
    upstream = {node_id: _link_targets(graph, node) for node_id, node in graph.items()}
    specs: dict[str, NodeSpec] = {}
    blocked: dict[str, NodeErrorItem] = {}
    for node_id, node in graph.items():
        spec = catalog.get(node["class_type"])
        if spec is None:
            blocked[node_id] = _class_error(ErrorType.MISSING_NODE_TYPE, node_id, node)
        elif allowlist is not None and spec.class_type not in allowlist:
            blocked[node_id] = _class_error(ErrorType.NODE_NOT_ALLOWED, node_id, node)
        else:
            specs[node_id] = spec
    outputs = [node_id for node_id, spec in specs.items() if spec.output_node]
    if blocked:
        top = next(
            (i for i in blocked.values() if i.type is ErrorType.MISSING_NODE_TYPE),
            next(iter(blocked.values())),
        )
        return _rejected(
            _as_prompt_error(top),
            _node_errors(graph, blocked, outputs, upstream),
        )
    cycles = _cycles(list(graph), upstream)
    if cycles:
        return _cycle_rejection(graph, cycles, outputs, upstream)
    if not outputs:
        return _rejected(
            PromptError(
                type=ErrorType.PROMPT_NO_OUTPUTS, message="Prompt has no outputs"
            ),
            {},
        )
    return _Validation(graph, specs, limits or ValidationLimits()).run(outputs)


class _Validation:
    """Deep validation from the output nodes, as ComfyUI walks the graph."""

    def __init__(
        self, graph: Graph, specs: Mapping[str, NodeSpec], limits: ValidationLimits
    ) -> None:
        self._graph = graph
        self._specs = specs
        self._limits = limits
        self._errors: dict[str, list[NodeErrorItem]] = {}
        self._followed: dict[str, list[str]] = {}
        self._valid: dict[str, bool] = {}
        # Nodes with an error the engine would not raise itself.
        self._unsafe: set[str] = set()

    def run(self, outputs: list[str]) -> ValidationResult:
        good: list[str] = []
        dependents: dict[str, list[str]] = {}
        for output in outputs:
            if self._is_valid(output):
                good.append(output)
                continue
            for node_id in _closure(output, self._followed_of):
                if self._errors_of(node_id):
                    dependents.setdefault(node_id, []).append(output)
        node_errors = {
            node_id: NodeError(
                errors=self._errors[node_id],
                dependent_outputs=dependents[node_id],
                class_type=self._graph[node_id]["class_type"],
            )
            for node_id in self._graph
            if node_id in dependents
        }
        if good and not self._unsafe:
            return ValidationResult(
                ok=True,
                node_errors=node_errors,
                output_nodes=good,
                file_inputs=self._file_inputs(),
            )
        return _rejected(
            PromptError(
                type=ErrorType.PROMPT_OUTPUTS_FAILED_VALIDATION,
                message="Prompt outputs failed validation",
                details=_detail_lines(node_errors.values()),
            ),
            node_errors,
        )

    def _file_inputs(self) -> list[FileInput]:
        # Every node an output depends on has been checked by now.
        return [
            FileInput(node_id=node_id, input_name=spec.name)
            for node_id, node in self._graph.items()
            if node_id in self._followed
            for spec in self._specs[node_id].validated_inputs()
            if spec.is_upload and isinstance(node["inputs"].get(spec.name), str)
        ]

    def _is_valid(self, root: str) -> bool:
        # Iterative post-order: the graph is acyclic here, and deep chains
        # must not hit Python's recursion limit.
        stack = [root]
        while stack:
            node_id = stack[-1]
            if node_id in self._valid:
                stack.pop()
                continue
            pending = [u for u in self._followed_of(node_id) if u not in self._valid]
            if pending:
                stack.extend(pending)
                continue
            stack.pop()
            self._valid[node_id] = not self._errors_of(node_id) and all(
                self._valid[u] for u in self._followed_of(node_id)
            )
        return self._valid[root]

    def _errors_of(self, node_id: str) -> list[NodeErrorItem]:
        if node_id not in self._errors:
            self._check_node(node_id)
        return self._errors[node_id]

    def _followed_of(self, node_id: str) -> list[str]:
        if node_id not in self._followed:
            self._check_node(node_id)
        return self._followed[node_id]

    def _check_node(self, node_id: str) -> None:
        inputs: Mapping[str, Any] = self._graph[node_id]["inputs"]
        errors: list[NodeErrorItem] = []
        followed: list[str] = []
        node_spec = self._specs[node_id]
        for spec in node_spec.validated_inputs():
            if spec.name not in inputs:
                if spec.category is InputCategory.REQUIRED:
                    errors.append(_required_missing(spec))
                continue
            value = inputs[spec.name]
            if isinstance(value, list):
                error, target = self._check_link(node_id, spec, value)
                if target is not None:
                    followed.append(target)
            else:
                error = _check_widget(spec, value)
                if error is None:
                    error = _check_file_value(node_id, spec, value, self._limits)
                    if error is not None:
                        self._unsafe.add(node_id)
            if error is not None:
                errors.append(error)
        undeclared = _undeclared_errors(node_id, node_spec, inputs, self._limits)
        if undeclared:
            self._unsafe.add(node_id)
        self._errors[node_id] = errors + undeclared
        self._followed[node_id] = followed

    def _check_link(
        self, node_id: str, spec: InputSpec, link: list[Any]
    ) -> tuple[NodeErrorItem | None, str | None]:
        if not _is_link(link):
            return _item(
                ErrorType.BAD_LINKED_INPUT,
                _BAD_LINK_MESSAGE,
                spec.name,
                input_name=spec.name,
                input_config=spec.raw,
                received_value=link,
            ), None
        target, index = link
        if target not in self._graph:
            return _item(
                ErrorType.EXCEPTION_DURING_VALIDATION,
                f"Node {node_id} links to node {target}, which does not exist",
                spec.name,
                input_name=spec.name,
                input_config=spec.raw,
                linked_node=link,
                exception_type="KeyError",
                exception_message=repr(target),
                traceback=[],
            ), None
        source = self._specs[target]
        if not 0 <= index < len(source.outputs):
            return _item(
                ErrorType.BAD_LINKED_INPUT,
                f"Bad linked input: output index {index} of node {target} "
                f"({source.class_type}) does not exist; it has "
                f"{len(source.outputs)} output(s)",
                spec.name,
                input_name=spec.name,
                input_config=spec.raw,
                received_value=link,
            ), None
        received = source.outputs[index]
        if not _types_match(received, spec.io_type):
            return _item(
                ErrorType.RETURN_TYPE_MISMATCH,
                "Return type mismatch between linked nodes",
                f"{spec.name}, received_type({_type_label(received)}) "
                f"mismatch input_type({_type_label(spec.io_type)})",
                input_name=spec.name,
                input_config=spec.raw,
                received_type=_jsonable_type(received),
                linked_node=link,
            ), None
        return None, target


def _undeclared_errors(
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
            errors.append(_reserved_input(node_id, name))
        elif name not in declared:
            error = _check_undeclared(node_id, node_spec, name, value, limits)
            if error is not None:
                errors.append(error)
    most = limits.max_unknown_inputs_per_node
    if len(undeclared) > most:
        errors.append(
            _item(
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
            f"number, boolean or null, not {_json_name(value)}"
        )
        return _item(
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
        return _item(
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


def _reserved_input(node_id: str, name: str) -> NodeErrorItem:
    problem = f"the input name '{name}' is reserved for the executor"
    return _item(
        ErrorType.INVALID_INPUT_TYPE,
        f"Node {node_id} input '{name}' is reserved",
        f"{name}, {problem}",
        input_name=name,
        node_id=node_id,
        exception_message=problem,
    )


def _check_widget(spec: InputSpec, value: Any) -> NodeErrorItem | None:
    value = _unwrapped(value)
    if _is_asset_ref(value):
        return _check_asset_ref(spec, value)
    converter = _CONVERTERS.get(spec.type_name)
    if converter is not None:
        try:
            value = converter(value)
        except (TypeError, ValueError, OverflowError) as exc:
            return _conversion_error(spec, value, str(exc))
    if _is_number(value):
        error = _check_range(spec, value)
        if error is not None:
            return error
    # An upload's choices are the engine's input folder, filled at run time;
    # `_check_file_value` checks its name instead.
    if spec.options is not None and not spec.is_upload:
        return _check_choice(spec, value)
    return None


def _check_file_value(
    node_id: str, spec: InputSpec, value: Any, limits: ValidationLimits
) -> NodeErrorItem | None:
    """What ComfyUI lets through but would reach other tenants' files."""
    if spec.is_upload and not _is_asset_ref(value):
        return _check_upload_name(node_id, spec, value)
    if spec.name == FILENAME_PREFIX:
        return _check_filename_prefix(
            node_id, spec.name, _unwrapped(value), limits, input_config=spec.raw
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
    return _item(
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


def _check_range(spec: InputSpec, value: float) -> NodeErrorItem | None:
    low, high = spec.config.get("min"), spec.config.get("max")
    if _is_number(low) and value < low:
        return _item(
            ErrorType.VALUE_SMALLER_THAN_MIN,
            f"Value {value} smaller than min of {low}",
            spec.name,
            input_name=spec.name,
            input_config=spec.raw,
            received_value=value,
        )
    if _is_number(high) and value > high:
        return _item(
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
    many = len(options) > _MAX_LISTED_CHOICES
    listed = f"(list of length {len(options)})" if many else str(list(options))
    return _item(
        ErrorType.VALUE_NOT_IN_LIST,
        "Value not in list",
        f"{spec.name}: '{value}' not in {listed}",
        input_name=spec.name,
        input_config=None if many else spec.raw,
        received_value=value,
    )


def _check_upload_name(
    node_id: str, spec: InputSpec, value: Any
) -> NodeErrorItem | None:
    problem = _upload_name_problem(value)
    if problem is None:
        return None
    many = spec.options is not None and len(spec.options) > _MAX_LISTED_CHOICES
    return _item(
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
    # The executor puts each job's files in a folder of its own; a subpath or
    # ComfyUI's " [output]"-style suffix would reach the shared folders that
    # hold other tenants' files.
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
    if "/" in value:
        return "subfolders are not allowed in file names"
    if value in (".", ".."):
        return f"'{value}' is not a file name"
    if _FOLDER_ANNOTATION.search(value):
        return "folder annotations ([input], [output], [temp]) are not allowed"
    return None


def _has_control_characters(value: str) -> bool:
    return any(ord(char) < 32 or ord(char) == 127 for char in value)


def _unwrapped(value: Any) -> Any:
    # Newer frontends wrap list-valued widgets so they are not read as links.
    if isinstance(value, Mapping) and "__value__" in value:
        return value["__value__"]
    return value


def _is_asset_ref(value: Any) -> bool:
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
    return _conversion_error(spec, dict(ref), problem)


def _conversion_error(spec: InputSpec, value: Any, problem: str) -> NodeErrorItem:
    return _item(
        ErrorType.INVALID_INPUT_TYPE,
        f"Failed to convert an input value to a {spec.type_name} value",
        f"{spec.name}, {value}, {problem}",
        input_name=spec.name,
        input_config=spec.raw,
        received_value=value,
        exception_message=problem,
    )


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
    raise TypeError(f"expected a string, got {_json_name(value)}")


def _to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise TypeError(f"expected true or false, got {_json_name(value)}")


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


def _is_link(value: Any) -> bool:
    return (
        isinstance(value, list)
        and len(value) == 2
        and isinstance(value[0], str)
        and isinstance(value[1], int)
        and not isinstance(value[1], bool)
    )


def _is_number(value: Any) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _link_targets(graph: Graph, node: Mapping[str, Any]) -> list[str]:
    """Nodes this node links to, through any input, declared or not."""
    return [
        value[0]
        for value in node["inputs"].values()
        if _is_link(value) and value[0] in graph
    ]


def _closure(root: str, upstream: Callable[[str], Iterable[str]]) -> list[str]:
    """`root` and every node it depends on."""
    seen = {root}
    order = [root]
    stack = [root]
    while stack:
        for target in upstream(stack.pop()):
            if target not in seen:
                seen.add(target)
                order.append(target)
                stack.append(target)
    return order


def _cycles(nodes: list[str], upstream: Mapping[str, list[str]]) -> list[list[str]]:
    """Node sets that form a cycle (Tarjan's strongly connected components)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    position = {node_id: i for i, node_id in enumerate(nodes)}

    def enter(node_id: str) -> None:
        index[node_id] = low[node_id] = len(index)
        stack.append(node_id)
        on_stack.add(node_id)

    for root in nodes:
        if root in index:
            continue
        enter(root)
        work = [(root, iter(upstream[root]))]
        while work:
            node_id, targets = work[-1]
            descended = False
            for target in targets:
                if target not in index:
                    enter(target)
                    work.append((target, iter(upstream[target])))
                    descended = True
                    break
                if target in on_stack:
                    low[node_id] = min(low[node_id], index[target])
            if descended:
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node_id])
            if low[node_id] != index[node_id]:
                continue
            component: list[str] = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node_id:
                    break
            if len(component) > 1 or node_id in upstream[node_id]:
                found.append(sorted(component, key=position.__getitem__))
    return sorted(found, key=lambda component: position[component[0]])


def _cycle_rejection(
    graph: Graph,
    cycles: list[list[str]],
    outputs: list[str],
    upstream: Mapping[str, list[str]],
) -> ValidationResult:
    items: dict[str, NodeErrorItem] = {}
    for cycle in cycles:
        members = ", ".join(f"'{node_id}'" for node_id in cycle)
        for node_id in cycle:
            items[node_id] = _item(
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
    return _rejected(
        PromptError(
            type=ErrorType.DEPENDENCY_CYCLE,
            message="Dependency cycle detected",
            details=details,
            extra_info={"cycles": cycles},
        ),
        _node_errors(graph, items, outputs, upstream),
    )


def _node_errors(
    graph: Graph,
    items: Mapping[str, NodeErrorItem],
    outputs: list[str],
    upstream: Mapping[str, list[str]],
) -> dict[str, NodeError]:
    closures = {
        output: set(_closure(output, upstream.__getitem__)) for output in outputs
    }
    return {
        node_id: NodeError(
            errors=[item],
            dependent_outputs=[o for o in outputs if node_id in closures[o]],
            class_type=graph[node_id]["class_type"],
        )
        for node_id, item in items.items()
    }


def _class_error(
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
    return _item(
        kind,
        message,
        f"Node ID '#{node_id}'",
        node_id=node_id,
        class_type=class_type,
        node_title=title,
    )


def _required_missing(spec: InputSpec) -> NodeErrorItem:
    return _item(
        ErrorType.REQUIRED_INPUT_MISSING,
        "Required input is missing",
        spec.name,
        input_name=spec.name,
    )


def _item(kind: ErrorType, message: str, details: str, **extra: Any) -> NodeErrorItem:
    return NodeErrorItem(type=kind, message=message, details=details, extra_info=extra)


def _as_prompt_error(item: NodeErrorItem) -> PromptError:
    return PromptError.model_validate(item.model_dump())


def _rejected(
    error: PromptError, node_errors: dict[str, NodeError]
) -> ValidationResult:
    return ValidationResult(ok=False, error=error, node_errors=node_errors)


def _detail_lines(entries: Iterable[NodeError]) -> str:
    return "\n".join(
        f"{item.message}: {item.details}" for entry in entries for item in entry.errors
    )


def _json_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, list | tuple):
        return "an array"
    return type(value).__name__
