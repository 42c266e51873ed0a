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

The walk over links, closures and cycles is `graph`; ComfyUI's per-input
checks are `inputs`, the stricter ones `safety`; the error shapes are
`error_items`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from comfyserve.workflow.validation.catalog import InputCategory, NodeCatalog, NodeSpec
from comfyserve.workflow.validation.error_items import (
    as_prompt_error,
    class_error,
    cycle_rejection,
    detail_lines,
    node_errors,
    rejected,
    required_missing,
)
from comfyserve.workflow.validation.graph import Graph, closure, cycles, link_targets
from comfyserve.workflow.validation.inputs import check_link, check_widget
from comfyserve.workflow.validation.models import (
    ErrorType,
    FileInput,
    NodeError,
    NodeErrorItem,
    PromptError,
    ValidationLimits,
    ValidationResult,
)
from comfyserve.workflow.validation.safety import check_file_value, undeclared_errors
from comfyserve.workflow.validation.workload import workload_errors

__all__ = ["validate"]


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
    upstream = {node_id: link_targets(graph, node) for node_id, node in graph.items()}
    specs: dict[str, NodeSpec] = {}
    blocked: dict[str, NodeErrorItem] = {}
    for node_id, node in graph.items():
        spec = catalog.get(node["class_type"])
        if spec is None:
            blocked[node_id] = class_error(ErrorType.MISSING_NODE_TYPE, node_id, node)
        elif allowlist is not None and spec.class_type not in allowlist:
            blocked[node_id] = class_error(ErrorType.NODE_NOT_ALLOWED, node_id, node)
        else:
            specs[node_id] = spec
    outputs = [node_id for node_id, spec in specs.items() if spec.output_node]
    if blocked:
        top = next(
            (i for i in blocked.values() if i.type is ErrorType.MISSING_NODE_TYPE),
            next(iter(blocked.values())),
        )
        return rejected(
            as_prompt_error(top),
            node_errors(graph, blocked, outputs, upstream),
        )
    found = cycles(list(graph), upstream)
    if found:
        return cycle_rejection(graph, found, outputs, upstream)
    if not outputs:
        return rejected(
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
            for node_id in closure(output, self._followed_of):
                if self._errors_of(node_id):
                    dependents.setdefault(node_id, []).append(output)
        entries = {
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
                node_errors=entries,
                output_nodes=good,
                file_inputs=self._file_inputs(),
            )
        return rejected(
            PromptError(
                type=ErrorType.PROMPT_OUTPUTS_FAILED_VALIDATION,
                message="Prompt outputs failed validation",
                details=detail_lines(entries.values()),
            ),
            entries,
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
                    errors.append(required_missing(spec))
                continue
            value = inputs[spec.name]
            if isinstance(value, list):
                error = check_link(node_id, spec, value, self._specs)
                if error is None:
                    followed.append(value[0])
            else:
                error = check_widget(spec, value)
                if error is None:
                    error = check_file_value(node_id, spec, value, self._limits)
                    if error is not None:
                        self._unsafe.add(node_id)
            if error is not None:
                errors.append(error)
        # Over this deployment's bounds the engine would run it all the same.
        refused = undeclared_errors(node_id, node_spec, inputs, self._limits)
        refused += workload_errors(node_id, inputs, self._limits)
        if refused:
            self._unsafe.add(node_id)
        self._errors[node_id] = errors + refused
        self._followed[node_id] = followed
