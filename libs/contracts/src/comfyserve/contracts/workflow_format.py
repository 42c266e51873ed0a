"""Pieces of the API-format workflow graph that several services interpret."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "ASSET_TYPE",
    "PARTNER_KEY",
    "RUN_MARK_INPUT",
    "AssetRef",
    "InvalidAssetRefError",
    "UnknownAssetError",
    "find_asset_refs",
    "replace_asset_refs",
]

ASSET_TYPE = "core/ASSET"
"""`__type` of an asset reference: `{"__type": "core/ASSET", "info": {"id": ...}}`."""

PARTNER_KEY = "api_key_comfy_org"
"""The `extra_data` entry holding the partner-node key: a secret that clients
send and ComfyUI reads while a prompt runs; never stored, logged or echoed."""

RUN_MARK_INPUT = "comfyserve_run"
"""An input the executor adds to sink nodes so ComfyUI runs them afresh for
every attempt; reserved, so a submitted graph may not use it."""


@dataclass(frozen=True, slots=True)
class AssetRef:
    """An asset reference found as the value of one node input."""

    node_id: str
    input_name: str
    file_id: str


class InvalidAssetRefError(ValueError):
    """An input is marked as an asset reference but carries no usable id."""

    def __init__(self, node_id: str, input_name: str) -> None:
        super().__init__(
            f"node {node_id!r} input {input_name!r}: asset reference needs "
            "a non-empty string info.id"
        )
        self.node_id = node_id
        self.input_name = input_name


class UnknownAssetError(LookupError):
    """No filename was given for a referenced file id."""

    def __init__(self, ref: AssetRef) -> None:
        super().__init__(
            f"node {ref.node_id!r} input {ref.input_name!r}: "
            f"no filename for asset {ref.file_id!r}"
        )
        self.ref = ref


def _asset_id(value: Any, node_id: str, input_name: str) -> str | None:
    if not isinstance(value, Mapping) or value.get("__type") != ASSET_TYPE:
        return None
    info = value.get("info")
    file_id = info.get("id") if isinstance(info, Mapping) else None
    if not isinstance(file_id, str) or not file_id:
        raise InvalidAssetRefError(node_id, input_name)
    return file_id


def find_asset_refs(graph: Mapping[str, Any]) -> list[AssetRef]:
    """Asset references used directly as node input values, in graph order.

    Nodes that are not objects with an `inputs` object are skipped: judging the
    graph's structure is the validator's job.
    """
    refs: list[AssetRef] = []
    for node_id, node in graph.items():
        inputs = node.get("inputs") if isinstance(node, Mapping) else None
        if not isinstance(inputs, Mapping):
            continue
        for input_name, value in inputs.items():
            file_id = _asset_id(value, node_id, input_name)
            if file_id is not None:
                refs.append(AssetRef(node_id, input_name, file_id))
    return refs


def replace_asset_refs(
    graph: Mapping[str, Any], names: Mapping[str, str]
) -> dict[str, Any]:
    """A deep copy of `graph` with each asset reference replaced by its filename.

    `names` maps file id to the filename the engine will see; a missing id
    raises `UnknownAssetError`.
    """
    replaced: dict[str, Any] = copy.deepcopy(dict(graph))
    for ref in find_asset_refs(graph):
        try:
            filename = names[ref.file_id]
        except KeyError:
            raise UnknownAssetError(ref) from None
        replaced[ref.node_id]["inputs"][ref.input_name] = filename
    return replaced
