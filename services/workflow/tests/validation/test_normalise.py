import json
import math
from typing import Any

import pytest

from comfyserve.contracts.limits import MAX_WORKFLOW_BYTES
from comfyserve.workflow.validation import (
    ErrorType,
    InvalidWorkflowError,
    NodeCatalog,
    ValidationLimits,
    WorkflowFormatUiError,
    normalise_workflow,
    validate,
)

API_GRAPH: dict[str, Any] = {
    "1": {
        "class_type": "EmptyImage",
        "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 0},
        "_meta": {"title": "Blank"},
    },
    "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
    "3": {
        "class_type": "SaveImage",
        "inputs": {"images": ["2", 0], "filename_prefix": "out"},
    },
}


def seed_input(name: str, type_: str, value: Any) -> dict[str, Any]:
    return {"name": name, "type": type_, "value": value}


def test_api_format_is_returned_as_an_equal_copy() -> None:
    graph = normalise_workflow(API_GRAPH)

    assert graph == API_GRAPH
    assert graph["2"]["inputs"] is not API_GRAPH["2"]["inputs"]
    assert graph["2"]["inputs"]["image"] is not API_GRAPH["2"]["inputs"]["image"]


def test_unknown_node_keys_are_dropped_and_inputs_default_to_empty() -> None:
    graph = normalise_workflow({"5": {"class_type": "X", "is_changed": ["a"]}})

    assert graph == {"5": {"class_type": "X", "inputs": {}}}


def test_nodes_form_with_typed_input_lists(catalog: NodeCatalog) -> None:
    raw = {
        "nodes": {
            "1": {
                "class_type": "EmptyImage",
                "inputs": [
                    seed_input("width", "INT", 64),
                    seed_input("height", "INT", 64),
                    seed_input("batch_size", "INT", 1),
                    seed_input("color", "INT", 0),
                ],
            },
            "2": {
                "class_type": "ImageInvert",
                "inputs": [seed_input("image", "IMAGE", [1, 0])],
            },
            "3": {
                "class_type": "SaveImage",
                "inputs": [
                    seed_input("images", "IMAGE", ["2", 0]),
                    seed_input("filename_prefix", "STRING", "out"),
                ],
            },
        }
    }

    graph = normalise_workflow(raw)

    assert graph == {
        "1": {
            "class_type": "EmptyImage",
            "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 0},
        },
        "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
        "3": {
            "class_type": "SaveImage",
            "inputs": {"images": ["2", 0], "filename_prefix": "out"},
        },
    }
    assert validate(graph, catalog).ok


def test_a_node_named_nodes_stays_api_format() -> None:
    raw = {"nodes": {"class_type": "SaveImage", "inputs": {}}}

    assert normalise_workflow(raw) == raw


@pytest.mark.parametrize(
    ("inputs", "field"),
    [
        ([3], "inputs[0]"),
        ([{"type": "INT", "value": 1}], "inputs[0].name"),
        ([{"name": "w", "type": "INT"}], "inputs[0].value"),
        ([seed_input("w", "INT", 1), seed_input("w", "INT", 2)], "inputs[1].name"),
    ],
)
def test_malformed_nodes_form_inputs(inputs: list[Any], field: str) -> None:
    raw = {"nodes": {"1": {"class_type": "EmptyImage", "inputs": inputs}}}

    with pytest.raises(InvalidWorkflowError) as caught:
        normalise_workflow(raw)

    assert caught.value.error.type is ErrorType.INVALID_PROMPT
    assert caught.value.error.extra_info == {"node_id": "1", "field": field}


def test_ui_export_is_recognised() -> None:
    ui = {"last_node_id": 3, "nodes": [{"id": 1, "type": "EmptyImage"}], "links": []}

    with pytest.raises(WorkflowFormatUiError) as caught:
        normalise_workflow(ui)

    error = caught.value.error
    assert error.type is ErrorType.WORKFLOW_FORMAT_UI
    assert "UI export" in error.message
    assert '"Save (API Format)"' in error.message
    assert caught.value.to_comfy()["node_errors"] == {}


@pytest.mark.parametrize(
    ("raw", "node_id", "field"),
    [
        ([], None, None),
        ("graph", None, None),
        ({}, None, None),
        ({"nodes": []}, None, "nodes"),
        ({"1": "EmptyImage"}, "1", None),
        ({"1": {"inputs": {}}}, "1", "class_type"),
        ({"1": {"class_type": 5, "inputs": {}}}, "1", "class_type"),
        ({"1": {"class_type": " ", "inputs": {}}}, "1", "class_type"),
        ({"1": {"class_type": "X", "inputs": []}}, "1", "inputs"),
        ({"1": {"class_type": "X", "inputs": {}, "_meta": "t"}}, "1", "_meta"),
        ({"1": {"class_type": "X", "inputs": {"v": {1, 2}}}}, "1", "inputs.v"),
        ({"a b": {"class_type": "X", "inputs": {}}}, "a b", None),
        ({"x" * 65: {"class_type": "X", "inputs": {}}}, "x" * 65, None),
        ({"../1": {"class_type": "X", "inputs": {}}}, "../1", None),
    ],
)
def test_malformed_workflows(raw: Any, node_id: str | None, field: str | None) -> None:
    with pytest.raises(InvalidWorkflowError) as caught:
        normalise_workflow(raw)

    error = caught.value.error
    assert error.type is ErrorType.INVALID_PROMPT
    assert not isinstance(caught.value, WorkflowFormatUiError)
    assert error.extra_info.get("node_id") == node_id
    assert error.extra_info.get("field") == field
    if node_id is not None:
        assert f"'{node_id}'" in error.message
    body = caught.value.to_comfy()
    assert body["error"]["type"] == "invalid_prompt"
    assert body["node_errors"] == {}


def test_node_id_pattern_accepts_subgraph_ids() -> None:
    raw = {"12:5": {"class_type": "X", "inputs": {}}, "a_b.c-d": {"class_type": "Y"}}

    assert set(normalise_workflow(raw)) == {"12:5", "a_b.c-d"}


def node(**inputs: Any) -> dict[str, Any]:
    return {"class_type": "X", "inputs": inputs}


@pytest.mark.parametrize(
    ("raw", "limit", "field"),
    [
        ({str(i): node() for i in range(4)}, "max_nodes", None),
        ({"nodes": {str(i): node() for i in range(4)}}, "max_nodes", None),
        ({"1": node(a=1, b=2, c=3)}, "max_inputs_per_node", "inputs"),
        ({"1": node(text="x" * 11)}, "max_string_length", "inputs.text"),
        ({"1": node(v={"k" * 11: 1})}, "max_string_length", "inputs.v"),
        ({"1": {"class_type": "X" * 11}}, "max_string_length", "class_type"),
        ({"1": node(v=[[[1]]])}, "max_value_depth", "inputs.v"),
        ({"1": node(v={"a": {"b": {"c": 1}}})}, "max_value_depth", "inputs.v"),
    ],
)
def test_limits(raw: dict[str, Any], limit: str, field: str | None) -> None:
    limits = ValidationLimits(
        max_nodes=3, max_inputs_per_node=2, max_string_length=10, max_value_depth=2
    )

    with pytest.raises(InvalidWorkflowError) as caught:
        normalise_workflow(raw, limits)

    error = caught.value.error
    assert error.type is ErrorType.PROMPT_LIMIT_EXCEEDED
    assert error.extra_info["limit"] == limit
    assert error.extra_info.get("field") == field


def test_values_within_limits_pass() -> None:
    limits = ValidationLimits(
        max_nodes=3, max_inputs_per_node=2, max_string_length=10, max_value_depth=2
    )
    raw = {"1": node(text="x" * 10, v=[[1]]), "2": node(), "3": node()}

    assert normalise_workflow(raw, limits) == raw


def test_default_limits() -> None:
    limits = ValidationLimits()

    assert limits.max_nodes == 500
    assert limits.max_string_length == 20_000
    with pytest.raises(InvalidWorkflowError):
        normalise_workflow({str(i): node() for i in range(501)})


def compact_size(graph: dict[str, Any]) -> int:
    """UTF-8 bytes of compact JSON, as the gateway sends the graph."""
    encoded = json.dumps(graph, separators=(",", ":"), ensure_ascii=False)
    return len(encoded.encode())


@pytest.mark.parametrize(
    "raw",
    [
        API_GRAPH,
        {"1": node()},
        {"1": node(text='quote " backslash \\ tab \t bell \x07 del \x7f')},
        {"1": node(text="é ü 日本 🎨")},
        {"1": node(a=-0.0, b=1e-7, c=1.5e300, d=-12, e=10**30, f=True, g=None)},
        {"1": node(v=[[], {}, [1, [2, {"k": "v"}]], {"a": [], "b": {}}])},
        {"1": {"class_type": "X", "inputs": {}, "_meta": {"title": "T", "n": [1]}}},
        {"nodes": {"1": {"class_type": "X", "inputs": [seed_input("a", "INT", 1)]}}},
    ],
)
def test_graph_size_is_counted_as_compact_json(raw: dict[str, Any]) -> None:
    size = compact_size(normalise_workflow(raw))

    assert normalise_workflow(raw, ValidationLimits(max_graph_bytes=size))
    with pytest.raises(InvalidWorkflowError) as caught:
        normalise_workflow(raw, ValidationLimits(max_graph_bytes=size - 1))
    assert caught.value.error.extra_info["value"] == size


def test_graph_over_the_byte_limit_names_its_largest_node() -> None:
    # 6 nodes of 18 strings of 20,000 characters: every other limit is kept.
    text = "x" * 20_000
    raw = {
        str(i): node(**{f"s{j}": text for j in range(18 + (i == 4))}) for i in range(6)
    }

    with pytest.raises(InvalidWorkflowError) as caught:
        normalise_workflow(raw)

    error = caught.value.error
    size = compact_size(raw)
    assert size > MAX_WORKFLOW_BYTES
    assert error.type is ErrorType.PROMPT_LIMIT_EXCEEDED
    assert error.details == "max_graph_bytes"
    assert error.extra_info == {
        "limit": "max_graph_bytes",
        "value": size,
        "limit_bytes": MAX_WORKFLOW_BYTES,
        "node_id": "4",
    }
    assert f"{size} bytes" in error.message
    assert "'4'" in error.message
    assert caught.value.to_comfy()["node_errors"] == {}


def test_default_graph_byte_limit_is_the_contracts_one() -> None:
    assert ValidationLimits().max_graph_bytes == MAX_WORKFLOW_BYTES == 2 * 1024**2


@pytest.mark.parametrize("value", [math.inf, -math.inf, math.nan])
@pytest.mark.parametrize("where", ["value", "in_list", "in_object"])
def test_non_finite_numbers_are_refused_naming_node_and_input(
    value: float, where: str
) -> None:
    cfg = {
        "value": value,
        "in_list": [1.0, [value]],
        "in_object": {"__value__": {"x": value}},
    }[where]
    raw = {"1": node(), "7": {"class_type": "KSampler", "inputs": {"cfg": cfg}}}
    field = "inputs.cfg"

    with pytest.raises(InvalidWorkflowError) as caught:
        normalise_workflow(raw)

    literal = json.dumps(value)
    assert caught.value.to_comfy() == {
        "error": {
            "type": "invalid_prompt",
            "message": f"Node '7' input 'cfg' holds {literal}; numbers must be finite",
            "details": f"{field}: {literal}",
            "extra_info": {"node_id": "7", "field": field},
        },
        "node_errors": {
            "7": {
                "errors": [
                    {
                        "type": "invalid_input_type",
                        "message": "Node 7 input 'cfg' is not a finite number",
                        "details": f"cfg, {literal}, numbers must be finite",
                        "extra_info": {
                            "input_name": "cfg",
                            "node_id": "7",
                            "exception_message": f"{literal} is not a finite number",
                        },
                    }
                ],
                "dependent_outputs": [],
                "class_type": "KSampler",
            }
        },
    }


@pytest.mark.parametrize(
    "text",
    [
        '{"1": {"class_type": "X", "inputs": {"v": 1e400}}}',
        '{"1": {"class_type": "X", "inputs": {"v": -1e400}}}',
        '{"1": {"class_type": "X", "inputs": {"v": NaN}}}',
        '{"1": {"class_type": "X", "inputs": {"v": [Infinity]}}}',
        '{"nodes": {"1": {"class_type": "X", '
        '"inputs": [{"name": "v", "type": "FLOAT", "value": 1e999}]}}}',
    ],
)
def test_non_finite_numbers_as_json_parses_them(text: str) -> None:
    with pytest.raises(InvalidWorkflowError) as caught:
        normalise_workflow(json.loads(text))

    assert caught.value.error.extra_info == {"node_id": "1", "field": "inputs.v"}
    assert caught.value.node_errors["1"].errors[0].extra_info["input_name"] == "v"


def test_non_finite_number_in_meta_is_refused() -> None:
    raw = {"1": {"class_type": "X", "inputs": {}, "_meta": {"w": math.inf}}}

    with pytest.raises(InvalidWorkflowError) as caught:
        normalise_workflow(raw)

    assert caught.value.error.extra_info == {"node_id": "1", "field": "_meta"}
    assert "'1'" in caught.value.error.message
    assert caught.value.to_comfy()["node_errors"] == {}


def test_large_finite_numbers_pass() -> None:
    raw = {"1": node(a=1.7976931348623157e308, b=-5e-324, c=10**300)}

    assert normalise_workflow(raw) == raw


def test_a_nul_in_an_input_is_refused_naming_node_and_input() -> None:
    raw = {
        "1": {"class_type": "CLIPTextEncode", "inputs": {"text": "cat\x00dog"}},
    }

    with pytest.raises(InvalidWorkflowError) as raised:
        normalise_workflow(raw)

    info = raised.value.error.extra_info
    assert (info["limit"], info["node_id"], info["field"]) == (
        "no_nul_characters",
        "1",
        "inputs.text",
    )
