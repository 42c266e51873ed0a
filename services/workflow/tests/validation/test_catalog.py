from typing import Any

import pytest

from comfyserve.workflow.validation import (
    InputCategory,
    InvalidCatalogError,
    NodeCatalog,
)


def test_real_snapshot_parses_every_class(
    catalog: NodeCatalog, object_info: dict[str, Any]
) -> None:
    assert len(catalog) == len(object_info) == 158
    assert "EmptyImage" in catalog
    assert catalog.get("NoSuchNode") is None


def test_typed_input_with_options(catalog: NodeCatalog) -> None:
    spec = catalog.get("EmptyImage")
    assert spec is not None

    width = spec.inputs["width"]

    assert width.category is InputCategory.REQUIRED
    assert width.io_type == "INT"
    assert width.type_name == "INT"
    assert width.config["min"] == 1
    assert width.options is None
    assert not width.is_combo
    assert spec.outputs == ("IMAGE",)
    assert spec.output_is_list == (False,)
    assert not spec.output_node


def test_bare_type_and_old_style_combo(catalog: NodeCatalog) -> None:
    spec = catalog.get("ImageScale")
    assert spec is not None

    assert spec.inputs["image"].io_type == "IMAGE"
    assert spec.inputs["image"].config == {}
    crop = spec.inputs["crop"]
    assert crop.is_combo
    assert crop.type_name == "COMBO"
    assert crop.options == ("disabled", "center")
    assert crop.raw == [["disabled", "center"]]


def test_hidden_inputs_are_parsed_but_not_validated(catalog: NodeCatalog) -> None:
    spec = catalog.get("SaveImage")
    assert spec is not None

    assert spec.inputs["prompt"].category is InputCategory.HIDDEN
    assert spec.inputs["prompt"].io_type == "PROMPT"
    assert [s.name for s in spec.validated_inputs()] == ["images", "filename_prefix"]
    assert spec.output_node


def test_required_come_before_optional(catalog: NodeCatalog) -> None:
    spec = catalog.get("ImageCompositeMasked")
    assert spec is not None

    names = [s.name for s in spec.validated_inputs()]

    assert names[-1] == "mask"
    assert spec.inputs["mask"].category is InputCategory.OPTIONAL


def test_upload_combo(catalog: NodeCatalog) -> None:
    spec = catalog.get("LoadImage")
    assert spec is not None

    assert spec.inputs["image"].is_upload
    assert spec.outputs == ("IMAGE", "MASK")


def test_newer_combo_form() -> None:
    catalog = NodeCatalog.from_object_info(
        {
            "Pick": {
                "input": {
                    "required": {"mode": ["COMBO", {"options": ["a", "b"]}]},
                    "optional": {"remote": ["COMBO", {"remote": {"route": "/x"}}]},
                },
                "output": ["COMBO", ["x", "y"]],
                "output_is_list": [True],
                "output_node": False,
            }
        }
    )
    spec = catalog.get("Pick")
    assert spec is not None

    assert spec.inputs["mode"].is_combo
    assert spec.inputs["mode"].options == ("a", "b")
    assert spec.inputs["remote"].is_combo
    assert spec.inputs["remote"].options is None
    assert spec.outputs == ("COMBO", ("x", "y"))
    assert spec.output_is_list == (True, False)


def test_merged_catalogs_offer_every_class_and_every_choice() -> None:
    first = {
        "Loader": {
            "input": {"required": {"name": [["a.ckpt"], {}]}},
            "output": ["MODEL"],
        },
        "Pick": {"input": {"required": {"m": ["COMBO", {"options": ["x"]}]}}},
    }
    second = {
        "Loader": {
            "input": {"required": {"name": [["b.ckpt", "a.ckpt"], {}]}},
            "output": ["MODEL"],
        },
        "Pick": {"input": {"required": {"m": ["COMBO", {"options": ["y"]}]}}},
        "Extra": {"input": {}, "output": [], "output_node": True},
    }

    catalog = NodeCatalog.from_object_info(first, second)

    assert catalog.class_types == frozenset({"Loader", "Pick", "Extra"})
    loader = catalog.get("Loader")
    pick = catalog.get("Pick")
    assert loader is not None
    assert pick is not None
    assert loader.inputs["name"].options == ("a.ckpt", "b.ckpt")
    assert loader.inputs["name"].raw == [["a.ckpt", "b.ckpt"], {}]
    assert pick.inputs["m"].options == ("x", "y")
    assert pick.inputs["m"].raw == ["COMBO", {"options": ["x", "y"]}]


@pytest.mark.parametrize(
    "definition",
    [
        {"input": "nope"},
        {"input": {"required": {"x": []}}},
        {"input": {"required": {"x": [42]}}},
        {"output": "IMAGE", "output_is_list": None},
    ],
)
def test_malformed_definitions_degrade(definition: dict[str, Any]) -> None:
    catalog = NodeCatalog.from_object_info({"Odd": definition, "Skipped": 3})

    spec = catalog.get("Odd")
    assert spec is not None
    assert all(s.io_type == "*" for s in spec.inputs.values())
    assert "Skipped" not in catalog


def test_catalog_must_be_an_object() -> None:
    with pytest.raises(InvalidCatalogError):
        NodeCatalog.from_object_info([])  # type: ignore[arg-type]
