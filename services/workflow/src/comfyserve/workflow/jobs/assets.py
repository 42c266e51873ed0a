"""Files a submitted graph names: asset references (`core/ASSET`) and plain
native names in upload inputs (`photo.png`, `sub/photo.png [input]`,
`<job id>/ComfyUI_00001_.png [output]`), each looked up among the caller's own
files only, named as the engine will see them, and the errors when one is
malformed or not available."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from comfyserve.contracts.events import InputFile
from comfyserve.contracts.workflow_format import InvalidAssetRefError, find_asset_refs
from comfyserve.workflow.adapters.files import FileLookup, StoredFile
from comfyserve.workflow.validation import ComfyErrors, ErrorType, FileInput

__all__ = ["MISSING_ASSET", "resolve_assets", "resolve_named_inputs"]

_ANNOTATION = re.compile(r"\s*\[\s*(input|output|temp)\s*\]\s*$", re.IGNORECASE)

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


async def resolve_named_inputs(
    lookup: FileLookup,
    tenant_id: str,
    graph: Mapping[str, Any],
    file_inputs: Sequence[FileInput],
    staged: Sequence[InputFile],
) -> list[InputFile] | ComfyErrors:
    """The tenant's files that plain names in upload inputs name, staged like
    asset references; else `value_not_in_list` for each name it has no file of,
    as ComfyUI answers a name missing from its input folder."""
    done = {(item.node_id, item.input_name) for item in staged}
    wanted = [ref for ref in file_inputs if (ref.node_id, ref.input_name) not in done]
    values = [str(graph[ref.node_id]["inputs"][ref.input_name]) for ref in wanted]
    found = await asyncio.gather(
        *(_named_file(lookup, tenant_id, value) for value in values)
    )
    missing: dict[str, list[dict[str, Any]]] = {}
    for ref, value, file in zip(wanted, values, found, strict=True):
        if file is None or not file.ready:
            missing.setdefault(ref.node_id, []).append(
                _error_item(
                    ErrorType.VALUE_NOT_IN_LIST.value,
                    "Value not in list",
                    f"{ref.input_name}: '{value}' not in the tenant's uploads",
                    input_name=ref.input_name,
                    input_config=None,
                    received_value=value,
                )
            )
    if missing:
        errors = _asset_errors(
            graph,
            missing,
            ErrorType.PROMPT_OUTPUTS_FAILED_VALIDATION.value,
            "Prompt outputs failed validation",
        )
        for node_id, entry in errors["node_errors"].items():
            entry["dependent_outputs"] = _dependent_outputs(graph, node_id)
        return errors
    taken = {item.filename for item in staged}
    inputs = []
    resolved = [
        (ref, file) for ref, file in zip(wanted, found, strict=True) if file is not None
    ]
    for ref, file in resolved:
        name = (
            file.filename
            if file.filename not in taken
            else f"{file.file_id}-{file.filename}"
        )
        taken.add(name)
        inputs.append(
            InputFile(
                file_id=file.file_id,
                node_id=ref.node_id,
                input_name=ref.input_name,
                filename=name,
                bucket=file.bucket,
                key=file.key,
                content_type=file.content_type,
                size=file.size,
                sha256=file.sha256,
            )
        )
    return inputs


async def _named_file(
    lookup: FileLookup, tenant_id: str, value: str
) -> StoredFile | None:
    """`name [output]` is `<job id>/<filename>` of an earlier job's output (the
    native subfolder convention); any other name is an upload's path in its
    folder (`input` unless annotated)."""
    folder = "input"
    annotated = _ANNOTATION.search(value)
    if annotated is not None:
        folder = annotated.group(1).lower()
        value = value[: annotated.start()]
    if folder == "output":
        job_id, _, rest = value.partition("/")
        if rest and "/" not in rest:
            found = await lookup.find_output(tenant_id, job_id, rest)
            if found is not None:
                return found
    return await lookup.find_named(tenant_id, folder, value)


def _dependent_outputs(graph: Mapping[str, Any], node_id: str) -> list[str]:
    """Output nodes whose inputs lead, through links, to `node_id`."""
    users: dict[str, set[str]] = {}
    for user, node in graph.items():
        for value in node.get("inputs", {}).values():
            if isinstance(value, list) and len(value) == 2 and value[0] in graph:
                users.setdefault(str(value[0]), set()).add(user)
    seen, stack = {node_id}, [node_id]
    while stack:
        for user in users.get(stack.pop(), ()):
            if user not in seen:
                seen.add(user)
                stack.append(user)
    return sorted(candidate for candidate in seen if candidate not in users)
