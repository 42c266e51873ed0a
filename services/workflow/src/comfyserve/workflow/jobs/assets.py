"""Asset references in a submitted graph: looked up for the caller's tenant,
named as the engine will see them, and the errors when one is malformed or
its file is not available."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from typing import Any

from comfyserve.contracts.events import InputFile
from comfyserve.contracts.workflow_format import InvalidAssetRefError, find_asset_refs
from comfyserve.workflow.adapters.files import FileLookup, StoredFile
from comfyserve.workflow.validation import ComfyErrors, ErrorType

__all__ = ["MISSING_ASSET", "resolve_assets"]

MISSING_ASSET = "missing_asset"


async def resolve_assets(
    lookup: FileLookup, tenant_id: str, graph: dict[str, Any]
) -> list[InputFile] | ComfyErrors:
    """The input files the graph's asset references name, each under the name
    the engine will see; else the errors that refuse the graph."""
    try:
        refs = find_asset_refs(graph)
    except InvalidAssetRefError as error:
        return _asset_errors(
            graph,
            {
                error.node_id: [
                    _error_item(
                        ErrorType.INVALID_INPUT_TYPE.value,
                        str(error),
                        input_name=error.input_name,
                    )
                ]
            },
            ErrorType.INVALID_PROMPT.value,
            "Invalid asset reference",
        )
    file_ids = sorted({ref.file_id for ref in refs})
    found = await asyncio.gather(
        *(lookup.get_file(tenant_id, file_id) for file_id in file_ids)
    )
    files = {file.file_id: file for file in found if file is not None and file.ready}
    missing: dict[str, list[dict[str, Any]]] = {}
    for ref in refs:
        if ref.file_id not in files:
            missing.setdefault(ref.node_id, []).append(
                _error_item(
                    MISSING_ASSET,
                    f"File {ref.file_id} is not available",
                    details=(
                        f"{ref.input_name}: file {ref.file_id} does not exist "
                        "or its upload is not complete"
                    ),
                    input_name=ref.input_name,
                    file_id=ref.file_id,
                )
            )
    if missing:
        return _asset_errors(
            graph,
            missing,
            MISSING_ASSET,
            "Referenced input files are not available",
        )
    names = _staged_names(files.values())
    return [
        InputFile(
            file_id=ref.file_id,
            node_id=ref.node_id,
            input_name=ref.input_name,
            filename=names[ref.file_id],
            bucket=files[ref.file_id].bucket,
            key=files[ref.file_id].key,
            content_type=files[ref.file_id].content_type,
            size=files[ref.file_id].size,
            sha256=files[ref.file_id].sha256,
        )
        for ref in refs
    ]


def _error_item(
    kind: str, message: str, details: str = "", **extra_info: Any
) -> dict[str, Any]:
    return {
        "type": kind,
        "message": message,
        "details": details,
        "extra_info": extra_info,
    }


def _asset_errors(
    graph: Mapping[str, Any],
    items: Mapping[str, list[dict[str, Any]]],
    kind: str,
    message: str,
) -> ComfyErrors:
    details = "; ".join(
        f"node {node_id}: {item['message']}"
        for node_id, node_items in items.items()
        for item in node_items
    )
    return {
        "error": _error_item(kind, message, details),
        "node_errors": {
            node_id: {
                "errors": node_items,
                "dependent_outputs": [],
                "class_type": str(graph[node_id].get("class_type", "")),
            }
            for node_id, node_items in items.items()
        },
    }


def _staged_names(files: Iterable[StoredFile]) -> dict[str, str]:
    """File id to the name the engine sees: the file's own name, prefixed by its
    id when another input of the job has the same name."""
    names: dict[str, str] = {}
    taken: set[str] = set()
    for file in sorted(files, key=lambda item: item.file_id):
        name = (
            file.filename
            if file.filename not in taken
            else f"{file.file_id}-{file.filename}"
        )
        taken.add(name)
        names[file.file_id] = name
    return names
