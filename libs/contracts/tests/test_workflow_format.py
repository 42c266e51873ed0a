import copy
from typing import Any

import pytest

from comfyserve.contracts.workflow_format import (
    ASSET_TYPE,
    AssetRef,
    InvalidAssetRefError,
    UnknownAssetError,
    find_asset_refs,
    replace_asset_refs,
)


def asset(file_id: object) -> dict[str, object]:
    return {"__type": ASSET_TYPE, "info": {"id": file_id}}


GRAPH: dict[str, Any] = {
    "1": {"class_type": "LoadImage", "inputs": {"image": asset("f1")}},
    "2": {
        "class_type": "ImageBlend",
        "inputs": {"image1": ["1", 0], "image2": asset("f2"), "blend_factor": 0.5},
    },
    "3": {"class_type": "LoadImage", "inputs": {"image": asset("f1")}},
    "4": {"class_type": "SaveImage", "inputs": {"images": ["2", 0]}},
}


def test_find_asset_refs_in_graph_order() -> None:
    assert find_asset_refs(GRAPH) == [
        AssetRef("1", "image", "f1"),
        AssetRef("2", "image2", "f2"),
        AssetRef("3", "image", "f1"),
    ]


def test_find_asset_refs_ignores_other_values_and_malformed_nodes() -> None:
    graph = {
        "1": {"inputs": {"a": {"__type": "other", "info": {"id": "x"}}}},
        "2": {"inputs": {"a": [asset("nested-in-list")]}},
        "3": "not a node",
        "4": {"class_type": "X"},
        "5": {"inputs": {"a": {"info": {"id": "x"}}}},
    }

    assert find_asset_refs(graph) == []


@pytest.mark.parametrize("bad", [None, "", 3, {"id": "x"}])
def test_malformed_asset_ref_is_rejected(bad: object) -> None:
    graph = {"1": {"inputs": {"image": asset(bad)}}}

    with pytest.raises(InvalidAssetRefError, match="'1' input 'image'"):
        find_asset_refs(graph)


def test_asset_ref_without_info_is_rejected() -> None:
    with pytest.raises(InvalidAssetRefError):
        find_asset_refs({"1": {"inputs": {"image": {"__type": ASSET_TYPE}}}})


def test_replace_asset_refs_returns_deep_copy() -> None:
    original = copy.deepcopy(GRAPH)

    replaced = replace_asset_refs(GRAPH, {"f1": "one.png", "f2": "two.png"})

    assert replaced["1"]["inputs"]["image"] == "one.png"
    assert replaced["2"]["inputs"] == {
        "image1": ["1", 0],
        "image2": "two.png",
        "blend_factor": 0.5,
    }
    assert replaced["3"]["inputs"]["image"] == "one.png"
    assert replaced["4"] == GRAPH["4"]
    assert GRAPH == original
    assert replaced["2"]["inputs"]["image1"] is not GRAPH["2"]["inputs"]["image1"]
    assert find_asset_refs(replaced) == []


def test_replace_asset_refs_needs_every_name() -> None:
    with pytest.raises(UnknownAssetError) as caught:
        replace_asset_refs(GRAPH, {"f1": "one.png"})

    assert caught.value.ref == AssetRef("2", "image2", "f2")
