"""Turning a granted graph into the prompt one ComfyUI runs for one attempt,
its input files fetched from storage and uploaded to ComfyUI.

Each job keeps to folders of its own inside ComfyUI: its inputs are staged into
`input/<job>/`, every file input names a file there (never one of ComfyUI's
shared folders, where other tenants' files lie), and its outputs are written
under `output/<job>-<attempt>/`.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any

from comfyserve.contracts.workflow_format import RUN_MARK_INPUT
from comfyserve.executor.engine import Engine
from comfyserve.executor.errors import InputUnavailable
from comfyserve.executor.jobs.models import FileInputRef
from comfyserve.executor.jobs.ports import FileStore
from comfyserve.executor.jobs.state import JobState

FILENAME_PREFIX = "filename_prefix"


def input_folder(job_id: str) -> str:
    return job_id


def output_folder(job_id: str, attempt: int) -> str:
    return f"{job_id}-{attempt}"


def _is_link(value: Any) -> bool:
    return (
        isinstance(value, list)
        and len(value) == 2
        and isinstance(value[0], str)
        and isinstance(value[1], int)
        and not isinstance(value[1], bool)
    )


def prompt_for(graph: dict[str, Any]) -> dict[str, Any]:
    """A copy of the graph that this attempt may rewrite."""
    return copy.deepcopy(graph)


def node_inputs(prompt: dict[str, Any], node_id: str) -> dict[str, Any]:
    node = prompt.get(node_id)
    if not isinstance(node, dict) or not isinstance(node.get("inputs"), dict):
        raise InputUnavailable(f"the workflow has no node {node_id} to take a file")
    inputs: dict[str, Any] = node["inputs"]
    return inputs


def confine_file_inputs(
    prompt: dict[str, Any],
    file_inputs: Iterable[FileInputRef],
    staged: set[tuple[str, str]],
    job_id: str,
) -> None:
    """Point every file input not staged by us into the job's own input folder.

    A plain name then names a file only this job could have put there, so it
    can never reach a file another job or tenant left in ComfyUI.
    """
    folder = input_folder(job_id)
    for ref in file_inputs:
        if (ref.node_id, ref.input_name) in staged:
            continue
        inputs = node_inputs(prompt, ref.node_id)
        value = inputs.get(ref.input_name)
        if isinstance(value, str):
            inputs[ref.input_name] = f"{folder}/{value}"


def confine_outputs(prompt: dict[str, Any], job_id: str, attempt: int) -> None:
    """Write every saved file under the attempt's own output folder."""
    folder = output_folder(job_id, attempt)
    for node in prompt.values():
        inputs = node.get("inputs") if isinstance(node, dict) else None
        if isinstance(inputs, dict) and isinstance(inputs.get(FILENAME_PREFIX), str):
            inputs[FILENAME_PREFIX] = f"{folder}/{inputs[FILENAME_PREFIX]}"


def force_fresh_outputs(prompt: dict[str, Any], token: str) -> None:
    """Make every sink node of `prompt` run again, while its inputs stay cached.

    ComfyUI answers a prompt it has seen from its cache, naming the files an
    earlier job saved, and that job's clean-up deleted them. An extra input,
    unique per attempt, on each node nothing links from changes only those
    nodes' cache keys; ComfyUI passes a node only the inputs it declares, so
    the node never sees it.
    """
    linked = {
        value[0]
        for node in prompt.values()
        if isinstance(node, dict) and isinstance(node.get("inputs"), dict)
        for value in node["inputs"].values()
        if _is_link(value)
    }
    for node_id, node in prompt.items():
        if node_id not in linked and isinstance(node, dict):
            if isinstance(node.get("inputs"), dict):
                node["inputs"][RUN_MARK_INPUT] = token


async def stage(state: JobState, engine: Engine, files: FileStore) -> dict[str, Any]:
    """The prompt for this attempt, its inputs staged in the job's folder."""
    assignment = state.assignment
    prompt = prompt_for(assignment.graph)
    staged: set[tuple[str, str]] = set()
    for file in assignment.inputs:
        inputs = node_inputs(prompt, file.node_id)
        data = await files.fetch_input(state.tenant_id, file)
        name = await engine.upload_input(
            data, file.filename, subfolder=input_folder(state.job_id)
        )
        # Recorded at once, so the attempt's clean-up deletes it however it ends.
        state.inputs.append(name)
        inputs[file.input_name] = name
        staged.add((file.node_id, file.input_name))
    confine_file_inputs(prompt, assignment.file_inputs, staged, state.job_id)
    confine_outputs(prompt, state.job_id, state.attempt)
    force_fresh_outputs(prompt, f"{state.job_id}:{state.attempt}")
    return prompt
