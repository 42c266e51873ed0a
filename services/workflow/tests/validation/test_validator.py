import math
from typing import Any

import pytest

from comfyserve.workflow.validation import (
    ErrorType,
    FileInput,
    NodeCatalog,
    ValidationLimits,
    ValidationResult,
    normalise_workflow,
    validate,
)
from comfyserve.workflow.validation.workload import workload_errors


def empty_image(width: Any = 64, height: Any = 64) -> dict[str, Any]:
    return {
        "class_type": "EmptyImage",
        "inputs": {"width": width, "height": height, "batch_size": 1, "color": 0},
    }


def invert(source: str) -> dict[str, Any]:
    return {"class_type": "ImageInvert", "inputs": {"image": [source, 0]}}


def save(source: Any, prefix: str = "out") -> dict[str, Any]:
    images = [source, 0] if isinstance(source, str) else source
    return {
        "class_type": "SaveImage",
        "inputs": {"images": images, "filename_prefix": prefix},
    }


def load_image(name: Any = "example.png") -> dict[str, Any]:
    return {"class_type": "LoadImage", "inputs": {"image": name}}


def check(
    graph: dict[str, Any], catalog: NodeCatalog, **kwargs: Any
) -> ValidationResult:
    return validate(normalise_workflow(graph), catalog, **kwargs)


def only_error(result: ValidationResult, node_id: str) -> dict[str, Any]:
    entry = result.to_comfy()["node_errors"][node_id]
    assert len(entry["errors"]) == 1
    error: dict[str, Any] = entry["errors"][0]
    return error


# --- valid graphs -----------------------------------------------------------


def test_empty_image_invert_save_is_valid(catalog: NodeCatalog) -> None:
    graph = {"1": empty_image(), "2": invert("1"), "3": save("2")}

    result = check(graph, catalog)

    assert result.ok
    assert result.error is None
    assert result.output_nodes == ["3"]
    assert result.to_comfy() == {"node_errors": {}}


def test_load_scale_invert_save_is_valid_with_a_file_not_in_the_catalog(
    catalog: NodeCatalog,
) -> None:
    graph = {
        "1": load_image("photo 1 [final].png"),
        "2": {
            "class_type": "ImageScale",
            "inputs": {
                "image": ["1", 0],
                "upscale_method": "bilinear",
                "width": 32,
                "height": 32,
                "crop": "center",
            },
        },
        "3": invert("2"),
        "4": save("3"),
    }

    result = check(graph, catalog)

    assert result.ok, result.to_comfy()
    assert result.output_nodes == ["4"]


def test_two_save_outputs_are_both_run(catalog: NodeCatalog) -> None:
    graph = {"1": empty_image(), "2": save("1", "a"), "3": save("1", "b")}

    result = check(graph, catalog)

    assert result.ok
    assert result.output_nodes == ["2", "3"]


def test_numeric_strings_convert_as_comfyui_does(catalog: NodeCatalog) -> None:
    graph = {"1": empty_image(width="32", height=16.0), "2": save("1")}

    assert check(graph, catalog).ok


def test_boolean_and_optional_inputs_are_accepted(catalog: NodeCatalog) -> None:
    graph = {
        "1": empty_image(),
        "2": load_image(),
        "3": {
            "class_type": "ImageCompositeMasked",
            "inputs": {
                "destination": ["1", 0],
                "source": ["1", 0],
                "x": 0,
                "y": 0,
                "resize_source": True,
                "mask": ["2", 1],
            },
        },
        "4": save("3"),
    }

    assert check(graph, catalog).ok


# --- per-node errors --------------------------------------------------------


def test_value_below_min_has_comfyuis_exact_shape(catalog: NodeCatalog) -> None:
    graph = {"1": empty_image(width=-5), "2": invert("1"), "3": save("2")}

    result = check(graph, catalog)

    assert not result.ok
    assert result.output_nodes == []
    assert result.to_comfy() == {
        "error": {
            "type": "prompt_outputs_failed_validation",
            "message": "Prompt outputs failed validation",
            "details": "Value -5 smaller than min of 1: width",
            "extra_info": {},
        },
        "node_errors": {
            "1": {
                "errors": [
                    {
                        "type": "value_smaller_than_min",
                        "message": "Value -5 smaller than min of 1",
                        "details": "width",
                        "extra_info": {
                            "input_name": "width",
                            "input_config": [
                                "INT",
                                {"default": 512, "min": 1, "max": 8192, "step": 1},
                            ],
                            "received_value": -5,
                        },
                    }
                ],
                "dependent_outputs": ["3"],
                "class_type": "EmptyImage",
            }
        },
    }


def test_value_above_max(catalog: NodeCatalog) -> None:
    graph = {
        "1": empty_image(),
        "2": {
            "class_type": "ImageBlur",
            "inputs": {"image": ["1", 0], "blur_radius": 1, "sigma": 10.5},
        },
        "3": save("2"),
    }

    error = only_error(check(graph, catalog), "2")

    assert error["type"] == "value_bigger_than_max"
    assert error["message"] == "Value 10.5 bigger than max of 10.0"
    assert error["extra_info"]["input_name"] == "sigma"
    assert error["extra_info"]["received_value"] == 10.5


def test_required_input_missing(catalog: NodeCatalog) -> None:
    image = empty_image()
    del image["inputs"]["color"]
    graph = {"1": image, "3": save("1")}

    result = check(graph, catalog)

    assert only_error(result, "1") == {
        "type": "required_input_missing",
        "message": "Required input is missing",
        "details": "color",
        "extra_info": {"input_name": "color"},
    }
    assert result.node_errors["1"].class_type == "EmptyImage"


def test_missing_optional_input_is_fine(catalog: NodeCatalog) -> None:
    graph = {
        "1": empty_image(),
        "2": {
            "class_type": "ImageCompositeMasked",
            "inputs": {
                "destination": ["1", 0],
                "source": ["1", 0],
                "x": 0,
                "y": 0,
                "resize_source": False,
            },
        },
        "3": save("2"),
    }

    assert check(graph, catalog).ok


@pytest.mark.parametrize("link", [["1", 0, 0], ["1"], [1, 0], ["1", "0"], ["1", True]])
def test_malformed_link_is_a_bad_linked_input(
    catalog: NodeCatalog, link: list[Any]
) -> None:
    graph = {"1": empty_image(), "3": save(link)}

    error = only_error(check(graph, catalog), "3")

    assert error["type"] == "bad_linked_input"
    assert error["message"] == (
        "Bad linked input, must be a length-2 list of [node_id, slot_index]"
    )
    assert error["extra_info"]["input_name"] == "images"
    assert error["extra_info"]["received_value"] == link


def test_link_to_a_missing_node_names_both_nodes(catalog: NodeCatalog) -> None:
    graph = {"1": empty_image(), "2": invert("99"), "3": save("2")}

    result = check(graph, catalog)

    error = only_error(result, "2")
    assert error["type"] == "exception_during_validation"
    assert error["message"] == "Node 2 links to node 99, which does not exist"
    assert error["extra_info"]["input_name"] == "image"
    assert error["extra_info"]["exception_type"] == "KeyError"
    assert result.node_errors["2"].dependent_outputs == ["3"]


@pytest.mark.parametrize("index", [1, 5, -1])
def test_link_to_an_output_index_out_of_range(catalog: NodeCatalog, index: int) -> None:
    graph = {"1": empty_image(), "3": save(["1", index])}

    error = only_error(check(graph, catalog), "3")

    assert error["type"] == "bad_linked_input"
    assert f"output index {index}" in error["message"]
    assert "1 output(s)" in error["message"]
    assert error["extra_info"]["input_name"] == "images"


def test_return_type_mismatch(catalog: NodeCatalog) -> None:
    graph = {"1": load_image(), "3": save(["1", 1])}

    error = only_error(check(graph, catalog), "3")

    assert error["type"] == "return_type_mismatch"
    assert error["message"] == "Return type mismatch between linked nodes"
    assert error["extra_info"] == {
        "input_name": "images",
        "input_config": ["IMAGE"],
        "received_type": "MASK",
        "linked_node": ["1", 1],
    }


def test_mismatched_link_is_not_followed(catalog: NodeCatalog) -> None:
    # ComfyUI does not validate a node that only a broken link reaches.
    graph = {
        "1": {
            "class_type": "KSampler",
            "inputs": {"seed": -1, "steps": 0, "cfg": 1.0},
        },
        "3": save("1"),
    }

    result = check(graph, catalog)

    assert set(result.node_errors) == {"3"}
    assert only_error(result, "3")["extra_info"]["received_type"] == "LATENT"


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("abc", "invalid literal for int() with base 10: 'abc'"),
        (True, "a boolean is not an integer"),
        (None, "int() argument must be"),
        (math.nan, "cannot convert float NaN to integer"),
        (math.inf, "cannot convert float infinity to integer"),
    ],
)
def test_int_conversion_failures(
    catalog: NodeCatalog, value: Any, problem: str
) -> None:
    graph = {"1": empty_image(width=value), "3": save("1")}

    # Straight to validate: normalise_workflow already refuses nan and inf,
    # and validate must hold on its own.
    error = only_error(validate(graph, catalog), "1")

    assert error["type"] == "invalid_input_type"
    assert error["message"] == "Failed to convert an input value to a INT value"
    assert error["details"].startswith("width, ")
    assert error["extra_info"]["exception_message"].startswith(problem)
    assert error["extra_info"]["input_name"] == "width"


@pytest.mark.parametrize("value", ["x", math.nan, -math.inf, "nan", "inf", False])
def test_float_conversion_failures(catalog: NodeCatalog, value: Any) -> None:
    graph = {
        "1": empty_image(),
        "2": {
            "class_type": "ImageBlur",
            "inputs": {"image": ["1", 0], "blur_radius": 1, "sigma": value},
        },
        "3": save("2"),
    }

    error = only_error(validate(graph, catalog), "2")

    assert error["type"] == "invalid_input_type"
    assert error["message"] == "Failed to convert an input value to a FLOAT value"
    assert error["extra_info"]["input_name"] == "sigma"


@pytest.mark.parametrize("value", [None, {"a": 1}])
def test_string_conversion_failures(catalog: NodeCatalog, value: Any) -> None:
    graph = {"1": empty_image(), "3": save("1", prefix=value)}

    error = only_error(check(graph, catalog), "3")

    assert error["type"] == "invalid_input_type"
    assert error["extra_info"]["input_name"] == "filename_prefix"


def test_numbers_are_accepted_as_strings(catalog: NodeCatalog) -> None:
    graph = {"1": empty_image(), "3": save("1", prefix=42)}  # type: ignore[arg-type]

    assert check(graph, catalog).ok


@pytest.mark.parametrize(("value", "ok"), [(True, True), (0, True), ("yes", False)])
def test_boolean_conversion(catalog: NodeCatalog, value: Any, ok: bool) -> None:
    graph = {
        "1": empty_image(),
        "2": {
            "class_type": "GrowMask",
            "inputs": {"mask": ["3", 1], "expand": 1, "tapered_corners": value},
        },
        "3": load_image(),
        "4": {"class_type": "MaskToImage", "inputs": {"mask": ["2", 0]}},
        "5": save("4"),
    }

    result = check(graph, catalog)

    assert result.ok is ok
    if not ok:
        assert only_error(result, "2")["type"] == "invalid_input_type"


def test_value_not_in_a_short_list_echoes_the_choices(catalog: NodeCatalog) -> None:
    graph = {
        "1": empty_image(),
        "2": {
            "class_type": "ImageScale",
            "inputs": {
                "image": ["1", 0],
                "upscale_method": "bogus",
                "width": 8,
                "height": 8,
                "crop": "disabled",
            },
        },
        "3": save("2"),
    }

    error = only_error(check(graph, catalog), "2")

    assert error == {
        "type": "value_not_in_list",
        "message": "Value not in list",
        "details": "upscale_method: 'bogus' not in "
        "['nearest-exact', 'bilinear', 'area', 'bicubic', 'lanczos']",
        "extra_info": {
            "input_name": "upscale_method",
            "input_config": [
                ["nearest-exact", "bilinear", "area", "bicubic", "lanczos"]
            ],
            "received_value": "bogus",
        },
    }


def test_value_not_in_a_long_list_omits_input_config(catalog: NodeCatalog) -> None:
    # KSampler's sampler list has more than 20 choices.
    graph = {
        "1": {
            "class_type": "KSampler",
            "inputs": {
                "seed": 0,
                "steps": 1,
                "cfg": 1.0,
                "sampler_name": "nope",
                "scheduler": "normal",
                "denoise": 1.0,
            },
        },
        "2": {"class_type": "VAEDecode", "inputs": {"samples": ["1", 0]}},
        "3": save("2"),
    }

    result = check(graph, catalog)

    errors = {e.type: e for e in result.node_errors["1"].errors}
    not_in_list = errors[ErrorType.VALUE_NOT_IN_LIST]
    assert not_in_list.details == "sampler_name: 'nope' not in (list of length 22)"
    assert not_in_list.extra_info["input_config"] is None
    assert errors[ErrorType.REQUIRED_INPUT_MISSING].extra_info["input_name"] in {
        "model",
        "positive",
        "negative",
        "latent_image",
    }
    # VAEDecode's own required `vae` is missing too.
    assert only_error(result, "2")["extra_info"] == {"input_name": "vae"}


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("../secret.png", "'.' and '..' are not allowed in file names"),
        ("a/../../b.png", "'.' and '..' are not allowed in file names"),
        ("./b.png [input]", "'.' and '..' are not allowed in file names"),
        ("a//b.png", "empty folder names are not allowed in file names"),
        ("a/ [output]", "empty folder names are not allowed in file names"),
        ("/etc/passwd", "absolute paths are not allowed"),
        ("C:/x.png", "absolute paths are not allowed"),
        ("a\\b.png", "backslashes are not allowed in file names"),
        ("a\x7fb.png", "control characters are not allowed in file names"),
        ("..", "'..' is not a file name"),
        ("", "expected a non-empty file name"),
        (" ", "expected a non-empty file name"),
        ("[output]", "expected a file name before the folder annotation"),
    ],
)
def test_unsafe_upload_names_are_refused(
    catalog: NodeCatalog, name: str, problem: str
) -> None:
    graph = {"1": load_image(name), "2": save("1")}

    error = only_error(check(graph, catalog), "1")

    assert error["type"] == "invalid_input_type"
    assert error["message"] == "Invalid file name for upload input 'image' of node 1"
    assert error["details"] == f"image, {name}, {problem}"
    assert error["extra_info"]["input_name"] == "image"
    assert error["extra_info"]["node_id"] == "1"
    assert error["extra_info"]["received_value"] == name
    assert error["extra_info"]["exception_message"] == problem


@pytest.mark.parametrize(
    "name",
    [
        "photo [1].png",
        "my [output] shot.png",
        "output.png",
        "x.png [outputs]",
        # Native names the submission resolves to the tenant's own files.
        "uploads/photo.png",
        "other.png [output]",
        "other.png[input]",
        "job/other.png [OUTPUT]",
        "other.png [ temp ] ",
    ],
)
def test_native_names_and_other_brackets_pass(catalog: NodeCatalog, name: str) -> None:
    graph = {"1": load_image(name), "2": save("1")}

    assert check(graph, catalog).ok


def test_a_wrapped_upload_value_is_refused(catalog: NodeCatalog) -> None:
    # Newer engines unwrap it into a name the executor could not see.
    graph = {"1": load_image({"__value__": "photo.png"}), "2": save("1")}

    error = only_error(check(graph, catalog), "1")

    assert error["type"] == "invalid_input_type"
    assert error["extra_info"]["exception_message"] == (
        "a file name must be a plain string, not a wrapped value"
    )


def test_an_unsafe_upload_name_refuses_the_whole_prompt(
    catalog: NodeCatalog,
) -> None:
    graph = {
        "1": empty_image(),
        "2": save("1"),
        "3": load_image("../other.png"),
        "4": save("3"),
    }

    result = check(graph, catalog)

    assert not result.ok
    assert list(result.node_errors) == ["3"]
    assert result.node_errors["3"].dependent_outputs == ["4"]


def test_upload_name_must_be_a_string(catalog: NodeCatalog) -> None:
    graph = {"1": load_image(5), "2": save("1")}

    assert only_error(check(graph, catalog), "1")["type"] == "invalid_input_type"


def test_upload_may_be_an_asset_reference(catalog: NodeCatalog) -> None:
    ref = {"__type": "core/ASSET", "info": {"id": "asset-1"}}
    graph = {"1": load_image(ref), "2": save("1")}

    assert check(graph, catalog).ok


def test_asset_reference_without_id_is_refused(catalog: NodeCatalog) -> None:
    ref = {"__type": "core/ASSET", "info": {}}
    graph = {"1": load_image(ref), "2": save("1")}

    assert only_error(check(graph, catalog), "1")["type"] == "invalid_input_type"


def test_non_upload_combos_still_check_the_list(catalog: NodeCatalog) -> None:
    graph = {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "x"}},
        "2": {"class_type": "CheckpointSave", "inputs": {}},
    }
    graph["2"]["inputs"] = {
        "model": ["1", 0],
        "clip": ["1", 1],
        "vae": ["1", 2],
        "filename_prefix": "ckpt",
    }

    error = only_error(check(graph, catalog), "1")

    assert error["type"] == "value_not_in_list"
    assert error["details"] == "ckpt_name: 'x' not in []"


def test_wrapped_widget_values_are_unwrapped(catalog: NodeCatalog) -> None:
    graph = {"1": empty_image(width={"__value__": -1}), "2": save("1")}

    assert only_error(check(graph, catalog), "1")["type"] == "value_smaller_than_min"


# --- graph-level behaviour ---------------------------------------------------


def test_nodes_not_reachable_from_an_output_are_not_validated(
    catalog: NodeCatalog,
) -> None:
    graph = {"1": empty_image(), "2": save("1"), "9": empty_image(width=-5)}

    result = check(graph, catalog)

    assert result.ok
    assert result.node_errors == {}


def test_downstream_nodes_of_a_failing_node_are_not_listed(
    catalog: NodeCatalog,
) -> None:
    graph = {"1": empty_image(width=0), "2": invert("1"), "3": save("2")}

    result = check(graph, catalog)

    assert list(result.node_errors) == ["1"]


def test_a_failing_node_lists_every_output_depending_on_it(
    catalog: NodeCatalog,
) -> None:
    graph = {
        "1": empty_image(width=-5, height=0),
        "2": invert("1"),
        "3": save("2"),
        "4": save("1"),
    }

    result = check(graph, catalog)

    assert not result.ok
    assert result.node_errors["1"].dependent_outputs == ["3", "4"]
    assert result.error is not None
    assert result.error.details == (
        "Value -5 smaller than min of 1: width\nValue 0 smaller than min of 1: height"
    )


def test_one_good_output_accepts_the_prompt_and_reports_the_bad_one(
    catalog: NodeCatalog,
) -> None:
    graph = {
        "1": empty_image(width=-5),
        "2": empty_image(),
        "3": save("1"),
        "4": save("2"),
    }

    result = check(graph, catalog)

    assert result.ok
    assert result.error is None
    assert result.output_nodes == ["4"]
    assert result.node_errors["1"].dependent_outputs == ["3"]
    assert "error" not in result.to_comfy()


def test_no_output_node(catalog: NodeCatalog) -> None:
    graph = {"1": empty_image(), "2": invert("1")}

    result = check(graph, catalog)

    assert result.to_comfy() == {
        "error": {
            "type": "prompt_no_outputs",
            "message": "Prompt has no outputs",
            "details": "",
            "extra_info": {},
        },
        "node_errors": {},
    }


def test_unknown_class_type(catalog: NodeCatalog) -> None:
    graph = {
        "1": empty_image(),
        "2": {
            "class_type": "FancyUpscaler",
            "inputs": {"image": ["1", 0]},
            "_meta": {"title": "My upscaler"},
        },
        "3": save("2"),
    }

    result = check(graph, catalog)

    assert result.to_comfy()["error"] == {
        "type": "missing_node_type",
        "message": "Node 'My upscaler' not found. "
        "The custom node may not be installed.",
        "details": "Node ID '#2'",
        "extra_info": {
            "node_id": "2",
            "class_type": "FancyUpscaler",
            "node_title": "My upscaler",
        },
    }
    entry = result.node_errors["2"]
    assert entry.class_type == "FancyUpscaler"
    assert entry.dependent_outputs == ["3"]
    assert entry.errors[0].type is ErrorType.MISSING_NODE_TYPE


def test_unknown_class_type_anywhere_is_an_error(catalog: NodeCatalog) -> None:
    graph = {"1": empty_image(), "2": save("1"), "7": {"class_type": "Nope"}}

    result = check(graph, catalog)

    assert not result.ok
    assert result.error is not None
    assert result.error.extra_info["node_title"] == "Nope"
    assert result.node_errors["7"].dependent_outputs == []


def test_missing_type_wins_over_not_allowed(catalog: NodeCatalog) -> None:
    graph = {"1": empty_image(), "2": save("1"), "3": {"class_type": "Nope"}}

    result = check(graph, catalog, allowlist=frozenset({"SaveImage"}))

    assert result.error is not None
    assert result.error.type is ErrorType.MISSING_NODE_TYPE
    assert {k: v.errors[0].type for k, v in result.node_errors.items()} == {
        "1": ErrorType.NODE_NOT_ALLOWED,
        "3": ErrorType.MISSING_NODE_TYPE,
    }


def test_node_not_on_the_allowlist(catalog: NodeCatalog) -> None:
    graph = {"1": empty_image(), "2": invert("1"), "3": save("2")}

    result = check(graph, catalog, allowlist=frozenset({"EmptyImage", "SaveImage"}))

    assert not result.ok
    assert result.error is not None
    assert result.error.type is ErrorType.NODE_NOT_ALLOWED
    assert result.error.extra_info["class_type"] == "ImageInvert"
    assert result.node_errors["2"].dependent_outputs == ["3"]


def test_allowlisted_graph_passes(catalog: NodeCatalog) -> None:
    graph = {"1": empty_image(), "2": save("1")}

    result = check(graph, catalog, allowlist=frozenset({"EmptyImage", "SaveImage"}))

    assert result.ok


def test_dependency_cycle(catalog: NodeCatalog) -> None:
    graph = {
        "1": empty_image(),
        "2": invert("4"),
        "3": save("2"),
        "4": invert("2"),
    }

    result = check(graph, catalog)

    assert result.error is not None
    assert result.error.type is ErrorType.DEPENDENCY_CYCLE
    assert result.error.extra_info == {"cycles": [["2", "4"]]}
    assert "'2', '4'" in result.error.details
    assert set(result.node_errors) == {"2", "4"}
    assert result.node_errors["4"].errors[0].extra_info["cycle"] == ["2", "4"]
    assert result.node_errors["2"].dependent_outputs == ["3"]


def test_self_loop_and_unreachable_cycles_are_errors(catalog: NodeCatalog) -> None:
    graph = {
        "1": empty_image(),
        "2": save("1"),
        "5": invert("5"),
        "6": invert("7"),
        "7": invert("6"),
    }

    result = check(graph, catalog)

    assert result.error is not None
    assert result.error.extra_info == {"cycles": [["5"], ["6", "7"]]}
    assert set(result.node_errors) == {"5", "6", "7"}


def test_long_chains_do_not_hit_the_recursion_limit(catalog: NodeCatalog) -> None:
    graph: dict[str, Any] = {"0": empty_image()}
    for i in range(1, 499):
        graph[str(i)] = invert(str(i - 1))
    graph["499"] = save("498")

    assert check(graph, catalog).ok

    graph["0"] = invert("498")
    assert check(graph, catalog).error is not None


# --- type compatibility and newer spec forms -----------------------------------


@pytest.fixture(scope="module")
def extended_catalog(object_info: dict[str, Any]) -> NodeCatalog:
    extra = {
        "AnySink": {
            "input": {"required": {"value": ["*"]}},
            "output": [],
            "output_node": True,
        },
        "ImageOrMaskSink": {
            "input": {"required": {"value": ["IMAGE,MASK"]}},
            "output": [],
            "output_node": True,
        },
        "PickMode": {
            "input": {
                "required": {
                    "mode": ["COMBO", {"options": ["fast", "slow"], "default": "fast"}]
                }
            },
            "output": ["STRING"],
            "output_node": True,
        },
    }
    return NodeCatalog.from_object_info(object_info, extra)


def test_wildcard_input_accepts_anything(extended_catalog: NodeCatalog) -> None:
    graph = {
        "1": load_image(),
        "2": {"class_type": "AnySink", "inputs": {"value": ["1", 1]}},
    }

    assert check(graph, extended_catalog).ok


@pytest.mark.parametrize("slot", [0, 1])
def test_comma_separated_types_match_any_member(
    extended_catalog: NodeCatalog, slot: int
) -> None:
    # LoadImage outputs IMAGE (slot 0) and MASK (slot 1).
    graph = {
        "1": load_image(),
        "2": {"class_type": "ImageOrMaskSink", "inputs": {"value": ["1", slot]}},
    }

    assert check(graph, extended_catalog).ok


def test_comma_separated_types_still_reject_others(
    extended_catalog: NodeCatalog,
) -> None:
    graph = {
        "1": {"class_type": "EmptyLatentImage", "inputs": {}},
        "2": {"class_type": "ImageOrMaskSink", "inputs": {"value": ["1", 0]}},
    }
    graph["1"]["inputs"] = {"width": 64, "height": 64, "batch_size": 1}

    error = only_error(check(graph, extended_catalog), "2")

    assert error["type"] == "return_type_mismatch"
    assert error["extra_info"]["received_type"] == "LATENT"


def test_combo_options_form(extended_catalog: NodeCatalog) -> None:
    good = {"1": {"class_type": "PickMode", "inputs": {"mode": "slow"}}}
    bad = {"1": {"class_type": "PickMode", "inputs": {"mode": "medium"}}}

    assert check(good, extended_catalog).ok
    error = only_error(check(bad, extended_catalog), "1")
    assert error["type"] == "value_not_in_list"
    assert error["details"] == "mode: 'medium' not in ['fast', 'slow']"
    assert error["extra_info"]["input_config"] == [
        "COMBO",
        {"options": ["fast", "slow"], "default": "fast"},
    ]


# --- inputs the class does not declare ---------------------------------------


def save_with(**extra: Any) -> dict[str, Any]:
    node = save("1")
    node["inputs"].update(extra)
    return node


@pytest.mark.parametrize(
    "value", ["a note", "", 3, -2.5, True, None, "x" * 1024, "../not/a/path"]
)
def test_undeclared_scalar_inputs_pass(catalog: NodeCatalog, value: Any) -> None:
    graph = {"1": empty_image(), "2": save_with(note=value)}

    assert check(graph, catalog).ok


@pytest.mark.parametrize(
    ("value", "kind"),
    [
        ([["a"], 1], "an array"),
        (["1", 0], "an array"),
        ([], "an array"),
        ({"a": 1}, "an object"),
        ({"__value__": [1, 2]}, "an object"),
    ],
)
def test_undeclared_input_holding_a_link_or_structure_is_refused(
    catalog: NodeCatalog, value: Any, kind: str
) -> None:
    graph = {"1": empty_image(), "2": save_with(note=value)}

    result = check(graph, catalog)

    assert not result.ok
    problem = (
        "an input the class does not declare may hold only a string, number, "
        f"boolean or null, not {kind}"
    )
    assert only_error(result, "2") == {
        "type": "invalid_input_type",
        "message": "Node 2 input 'note' is not declared by SaveImage, "
        "so it cannot take a link or a structured value",
        "details": f"note, {problem}",
        "extra_info": {
            "input_name": "note",
            "node_id": "2",
            "exception_message": problem,
        },
    }
    assert result.node_errors["2"].dependent_outputs == ["2"]


def test_hidden_inputs_count_as_undeclared(catalog: NodeCatalog) -> None:
    # SaveImage's hidden `prompt` is filled by the engine, which still reads
    # a list there as a link first.
    graph = {"1": empty_image(), "2": save_with(prompt=["1", 0])}

    error = only_error(check(graph, catalog), "2")

    assert error["type"] == "invalid_input_type"
    assert error["extra_info"]["input_name"] == "prompt"


def test_undeclared_string_over_the_limit(catalog: NodeCatalog) -> None:
    graph = {"1": empty_image(), "2": save_with(note="x" * 1025)}

    assert only_error(check(graph, catalog), "2") == {
        "type": "prompt_limit_exceeded",
        "message": "Node 2 input 'note' is not declared by SaveImage and holds "
        "1025 characters; at most 1024 are allowed",
        "details": "note",
        "extra_info": {
            "input_name": "note",
            "node_id": "2",
            "limit": "max_unknown_string_length",
            "value": 1025,
        },
    }


def test_declared_strings_are_not_held_to_the_undeclared_limit(
    catalog: NodeCatalog,
) -> None:
    graph = {"1": empty_image(), "2": save("1", prefix="x" * 190)}
    limits = ValidationLimits(max_unknown_string_length=10)

    assert validate(normalise_workflow(graph), catalog, limits=limits).ok


def test_at_most_sixteen_undeclared_inputs(catalog: NodeCatalog) -> None:
    sixteen = {f"n{i}": i for i in range(16)}
    ok = {"1": empty_image(), "2": save_with(**sixteen)}
    too_many = {"1": empty_image(), "2": save_with(**sixteen, n16=16, n17=17)}

    assert check(ok, catalog).ok
    assert only_error(check(too_many, catalog), "2") == {
        "type": "prompt_limit_exceeded",
        "message": "Node 2 has 18 inputs that SaveImage does not declare; at most "
        "16 are allowed, the first one too many is 'n16'",
        "details": "n16",
        "extra_info": {
            "input_name": "n16",
            "node_id": "2",
            "limit": "max_unknown_inputs_per_node",
            "value": 18,
        },
    }


def test_the_review_graph_of_long_undeclared_strings_is_refused(
    catalog: NodeCatalog,
) -> None:
    # 1.6 MB: under the graph limit, so only the undeclared-input rules stop it.
    extra = {f"pad{i}": "x" * 20_000 for i in range(80)}
    graph = {"1": empty_image(), "2": save_with(**extra)}

    result = check(graph, catalog)

    assert not result.ok
    errors = result.node_errors["2"].errors
    assert len(errors) == 81
    assert {e.extra_info["limit"] for e in errors} == {
        "max_unknown_string_length",
        "max_unknown_inputs_per_node",
    }
    assert [e.extra_info["input_name"] for e in errors[:80]] == list(extra)


@pytest.mark.parametrize("value", ["run-1", 1, None])
def test_the_executors_reserved_input_is_refused(
    catalog: NodeCatalog, value: Any
) -> None:
    graph = {"1": empty_image(), "2": save_with(comfyserve_run=value)}

    error = only_error(check(graph, catalog), "2")

    assert error["type"] == "invalid_input_type"
    assert error["message"] == "Node 2 input 'comfyserve_run' is reserved"
    assert error["extra_info"]["input_name"] == "comfyserve_run"
    assert error["extra_info"]["node_id"] == "2"


def test_undeclared_errors_follow_declared_ones(catalog: NodeCatalog) -> None:
    graph = {"1": empty_image(width=-5), "2": save("1"), "3": empty_image()}
    graph["1"]["inputs"]["note"] = ["3", 0]

    result = check(graph, catalog)

    assert [e.type for e in result.node_errors["1"].errors] == [
        ErrorType.VALUE_SMALLER_THAN_MIN,
        ErrorType.INVALID_INPUT_TYPE,
    ]


def test_an_error_comfyui_would_miss_refuses_the_whole_prompt(
    catalog: NodeCatalog,
) -> None:
    # The engine gets the whole graph and runs every output it finds valid,
    # so output 3 would run there even though it is dropped here.
    graph = {"1": empty_image(), "2": save("1"), "3": save_with(note=[["a"], 1])}

    result = check(graph, catalog)

    assert not result.ok
    assert result.output_nodes == []
    assert result.error is not None
    assert result.error.type is ErrorType.PROMPT_OUTPUTS_FAILED_VALIDATION
    assert list(result.node_errors) == ["3"]
    assert result.node_errors["3"].dependent_outputs == ["3"]


def test_undeclared_inputs_of_nodes_no_output_needs_are_not_checked(
    catalog: NodeCatalog,
) -> None:
    stray = empty_image()
    stray["inputs"]["note"] = [["a"], 1]
    graph = {"1": empty_image(), "2": save("1"), "9": stray}

    assert check(graph, catalog).ok


# --- filename_prefix -----------------------------------------------------------


@pytest.mark.parametrize(
    ("prefix", "problem"),
    [
        ("../../../../tmp/evil", "'..' is not allowed in a prefix"),
        ("renders/../../evil", "'..' is not allowed in a prefix"),
        ("..", "'..' is not allowed in a prefix"),
        ("/tmp/evil", "absolute paths are not allowed"),
        ("C:/evil", "absolute paths are not allowed"),
        ("c:evil", "absolute paths are not allowed"),
        ("renders\\..\\evil", "backslashes are not allowed in a prefix"),
        ("out\x01.png", "control characters are not allowed in a prefix"),
        ("out\nx", "control characters are not allowed in a prefix"),
        ("", "expected a non-empty prefix"),
        ("  ", "expected a non-empty prefix"),
        ("x" * 201, "at most 200 characters are allowed, got 201"),
    ],
)
def test_unsafe_filename_prefixes_are_refused(
    catalog: NodeCatalog, prefix: str, problem: str
) -> None:
    graph = {"1": empty_image(), "2": save("1", prefix=prefix)}

    assert only_error(check(graph, catalog), "2") == {
        "type": "invalid_input_type",
        "message": "Invalid filename_prefix for node 2",
        "details": f"filename_prefix, {prefix}, {problem}",
        "extra_info": {
            "input_name": "filename_prefix",
            "input_config": ["STRING", {"default": "ComfyUI"}],
            "received_value": prefix,
            "exception_message": problem,
            "node_id": "2",
        },
    }


@pytest.mark.parametrize(
    "prefix", ["ComfyUI", "renders/cat", "a/b/c_", "..x", "x..", "x" * 200, "%date%"]
)
def test_relative_filename_prefixes_pass(catalog: NodeCatalog, prefix: str) -> None:
    graph = {"1": empty_image(), "2": save("1", prefix=prefix)}

    assert check(graph, catalog).ok


def test_every_save_node_has_its_prefix_checked(catalog: NodeCatalog) -> None:
    graph = {
        "1": {"class_type": "EmptyLatentImage", "inputs": {}},
        "2": {
            "class_type": "SaveLatent",
            "inputs": {"samples": ["1", 0], "filename_prefix": "/abs/latent"},
        },
    }
    graph["1"]["inputs"] = {"width": 64, "height": 64, "batch_size": 1}

    error = only_error(check(graph, catalog), "2")

    assert error["extra_info"]["exception_message"] == "absolute paths are not allowed"


def test_a_wrapped_filename_prefix_is_checked(catalog: NodeCatalog) -> None:
    graph = {"1": empty_image(), "2": save_with()}
    graph["2"]["inputs"]["filename_prefix"] = {"__value__": "../evil"}

    error = only_error(check(graph, catalog), "2")

    assert error["extra_info"]["received_value"] == "../evil"


def test_an_undeclared_filename_prefix_is_checked_too(catalog: NodeCatalog) -> None:
    image = empty_image()
    image["inputs"]["filename_prefix"] = "../evil"
    graph = {"1": image, "2": save("1")}

    error = only_error(check(graph, catalog), "1")

    assert error["type"] == "invalid_input_type"
    assert error["extra_info"] == {
        "input_name": "filename_prefix",
        "received_value": "../evil",
        "exception_message": "'..' is not allowed in a prefix",
        "node_id": "1",
    }


def test_an_unsafe_prefix_refuses_the_whole_prompt(catalog: NodeCatalog) -> None:
    graph = {"1": empty_image(), "2": save("1"), "3": save("1", prefix="/tmp/x")}

    result = check(graph, catalog)

    assert not result.ok
    assert list(result.node_errors) == ["3"]


def test_the_prefix_length_limit_is_configurable(catalog: NodeCatalog) -> None:
    graph = normalise_workflow({"1": empty_image(), "2": save("1", prefix="abcd")})

    limits = ValidationLimits(max_filename_prefix_length=3)

    assert not validate(graph, catalog, limits=limits).ok


# --- file inputs ---------------------------------------------------------------


def test_upload_inputs_holding_a_name_are_listed(catalog: NodeCatalog) -> None:
    graph = {
        "1": load_image("a.png"),
        "2": {"class_type": "LoadImageMask", "inputs": {}},
        "3": {"class_type": "ImageCompositeMasked", "inputs": {}},
        "4": save("3"),
    }
    graph["2"]["inputs"] = {"image": "m.png", "channel": "alpha"}
    graph["3"]["inputs"] = {
        "destination": ["1", 0],
        "source": ["1", 0],
        "x": 0,
        "y": 0,
        "resize_source": False,
        "mask": ["2", 0],
    }

    result = check(graph, catalog)

    assert result.ok, result.to_comfy()
    assert result.file_inputs == [
        FileInput(node_id="1", input_name="image"),
        FileInput(node_id="2", input_name="image"),
    ]
    assert "file_inputs" not in result.to_comfy()


def test_graphs_without_uploads_list_no_file_inputs(catalog: NodeCatalog) -> None:
    graph = {"1": empty_image(), "2": save("1")}

    assert check(graph, catalog).file_inputs == []


def test_nodes_no_output_needs_are_not_listed(catalog: NodeCatalog) -> None:
    graph = {"1": load_image("a.png"), "2": save("1"), "9": load_image("b.png")}

    assert check(graph, catalog).file_inputs == [
        FileInput(node_id="1", input_name="image")
    ]


def test_inputs_of_outputs_that_failed_are_listed(catalog: NodeCatalog) -> None:
    # ComfyUI reads True as 1 and would run output 5, which is dropped here.
    graph = {
        "1": empty_image(),
        "2": save("1"),
        "3": load_image("a.png"),
        "4": {
            "class_type": "ImageBlur",
            "inputs": {"image": ["3", 0], "blur_radius": True, "sigma": 1.0},
        },
        "5": save("4"),
    }

    result = check(graph, catalog)

    assert result.ok
    assert result.output_nodes == ["2"]
    assert list(result.node_errors) == ["4"]
    assert result.file_inputs == [FileInput(node_id="3", input_name="image")]


def test_links_and_unreplaced_asset_references_are_not_listed(
    extended_catalog: NodeCatalog,
) -> None:
    ref = {"__type": "core/ASSET", "info": {"id": "asset-1"}}
    graph = {
        "1": {"class_type": "PickMode", "inputs": {"mode": "fast"}},
        "2": load_image(ref),
        "3": save("2"),
        "4": load_image(["1", 0]),
        "5": save("4"),
    }

    result = check(graph, extended_catalog)

    assert result.ok, result.to_comfy()
    assert result.file_inputs == []


def test_a_refused_prompt_lists_no_file_inputs(catalog: NodeCatalog) -> None:
    graph = {"1": load_image("a.png"), "2": save("1", prefix="/x")}

    result = check(graph, catalog)

    assert not result.ok
    assert result.file_inputs == []


# --- workload bounds --------------------------------------------------------


def test_an_image_over_the_pixel_limit_is_refused_naming_node_and_input(
    catalog: NodeCatalog,
) -> None:
    graph = {"1": empty_image(8192, 4096), "2": save("1")}

    result = check(graph, catalog)

    assert not result.ok
    assert only_error(result, "1") == {
        "type": "prompt_limit_exceeded",
        "message": "Node 1 asks for a 8192 × 4096 image, 33554432 pixels; at most "
        "16777216 are allowed here",
        "details": "width",
        "extra_info": {
            "input_name": "width",
            "node_id": "1",
            "limit": "max_image_pixels",
            "value": 33554432,
        },
    }


def test_an_image_at_the_pixel_limit_passes(catalog: NodeCatalog) -> None:
    assert check({"1": empty_image(4096, 4096), "2": save("1")}, catalog).ok


def test_steps_and_batch_size_over_their_limits_are_each_named(
    catalog: NodeCatalog,
) -> None:
    image = empty_image()
    image["inputs"]["batch_size"] = 3
    graph = {"1": image, "2": save("1")}
    limits = ValidationLimits(max_batch_size=2)

    result = validate(normalise_workflow(graph), catalog, limits=limits)

    assert not result.ok
    error = only_error(result, "1")
    assert error["extra_info"] == {
        "input_name": "batch_size",
        "node_id": "1",
        "limit": "max_batch_size",
        "value": 3,
    }
    assert validate(
        normalise_workflow(graph), catalog, limits=ValidationLimits(max_batch_size=3)
    ).ok


def test_sampling_steps_over_the_limit_are_refused() -> None:
    errors = workload_errors("7", {"steps": 501, "cfg": 7.0}, ValidationLimits())

    assert [e.model_dump()["extra_info"] for e in errors] == [
        {"input_name": "steps", "node_id": "7", "limit": "max_steps", "value": 501}
    ]
    assert workload_errors("7", {"steps": 500}, ValidationLimits()) == []
    # A linked value is only known when the job runs.
    assert workload_errors("7", {"steps": ["3", 0]}, ValidationLimits()) == []


def test_a_workload_refusal_refuses_the_whole_prompt(catalog: NodeCatalog) -> None:
    # One output within bounds must not run while another is refused.
    graph = {
        "1": empty_image(),
        "2": save("1"),
        "3": empty_image(8192, 8192),
        "4": save("3"),
    }

    result = check(graph, catalog)

    assert not result.ok
    assert set(result.node_errors) == {"3"}
