"""Rewriting a granted graph into the prompt of one attempt, and staging its
inputs (through the real `JobRunner` on hand-written fakes)."""

from __future__ import annotations

from typing import Any

import pytest

from comfyserve.contracts.events import FailureCode, JobFailed
from comfyserve.contracts.workflow_format import RUN_MARK_INPUT
from comfyserve.executor.engine import ExecutionSucceeded, PromptQueued
from comfyserve.executor.errors import InputUnavailable
from comfyserve.executor.jobs.models import FileInputRef
from comfyserve.executor.jobs.staging import (
    confine_file_inputs,
    confine_outputs,
    force_fresh_outputs,
    input_folder,
    output_folder,
    prompt_for,
)

from .conftest import GRAPH, JOB, PROMPT, Harness, input_file


def test_each_job_and_attempt_has_folders_of_its_own():
    assert input_folder("job-1") == "job-1"
    assert output_folder("job-1", 2) == "job-1-2"
    assert output_folder("job-1", 3) != output_folder("job-1", 2)


def test_the_prompt_is_a_copy_the_attempt_may_rewrite():
    graph: dict[str, Any] = {"1": {"class_type": "X", "inputs": {"a": ["2", 0]}}}

    prompt = prompt_for(graph)
    prompt["1"]["inputs"]["a"][0] = "9"

    assert graph == {"1": {"class_type": "X", "inputs": {"a": ["2", 0]}}}


def test_file_inputs_not_staged_are_rebased_into_the_jobs_folder():
    prompt: dict[str, Any] = {
        "1": {"class_type": "LoadImage", "inputs": {"image": "job-1/in.png"}},
        "2": {"class_type": "LoadImage", "inputs": {"image": "other.png"}},
        "3": {"class_type": "LoadImage", "inputs": {"image": ["1", 0]}},
        "4": {"class_type": "LoadImage", "inputs": {"image": "free.png"}},
    }

    confine_file_inputs(
        prompt,
        [
            FileInputRef("1", "image"),
            FileInputRef("2", "image"),
            FileInputRef("3", "image"),
        ],
        staged={("1", "image")},
        job_id="job-1",
    )

    assert prompt["1"]["inputs"]["image"] == "job-1/in.png"
    assert prompt["2"]["inputs"]["image"] == "job-1/other.png"
    # A link carries no file name; an input not listed is no file input.
    assert prompt["3"]["inputs"]["image"] == ["1", 0]
    assert prompt["4"]["inputs"]["image"] == "free.png"


def test_a_file_input_on_a_missing_node_is_refused():
    with pytest.raises(InputUnavailable, match="no node 7"):
        confine_file_inputs({}, [FileInputRef("7", "image")], set(), "job-1")


def test_every_filename_prefix_goes_under_the_attempts_folder():
    prompt: dict[str, Any] = {
        "1": {"class_type": "SaveImage", "inputs": {"filename_prefix": "a/b"}},
        "2": {"class_type": "SaveVideo", "inputs": {"filename_prefix": "v"}},
        "3": {"class_type": "SaveImage", "inputs": {"filename_prefix": ["9", 0]}},
        "4": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
    }

    confine_outputs(prompt, "job-1", 2)

    assert prompt["1"]["inputs"]["filename_prefix"] == "job-1-2/a/b"
    assert prompt["2"]["inputs"]["filename_prefix"] == "job-1-2/v"
    assert prompt["3"]["inputs"]["filename_prefix"] == ["9", 0]
    assert prompt["4"]["inputs"] == {"image": ["1", 0]}


def test_force_fresh_outputs_marks_only_sink_nodes():
    prompt: dict[str, Any] = {
        "1": {"class_type": "EmptyImage", "inputs": {"width": 8}},
        "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0]}},
        "4": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}},
    }

    force_fresh_outputs(prompt, "job:1")

    marked = {
        node_id for node_id, node in prompt.items() if RUN_MARK_INPUT in node["inputs"]
    }
    assert marked == {"3", "4"}
    assert prompt["3"]["inputs"][RUN_MARK_INPUT] == "job:1"


async def test_file_inputs_are_confined_to_the_jobs_own_input_folder():
    graph = {
        **GRAPH,
        "4": {"class_type": "LoadImage", "inputs": {"image": "shared.png"}},
        "5": {"class_type": "LoadImage", "inputs": {"image": "unlisted.png"}},
    }
    h = Harness([PromptQueued(PROMPT), ExecutionSucceeded(PROMPT, {})])
    h.files.inputs["in-1"] = b"abc"

    await h.run(
        h.assignment(
            [input_file()],
            [FileInputRef("1", "image"), FileInputRef("4", "image")],
            graph=graph,
        )
    )

    assert h.engine.subfolders == [JOB]
    [prompt] = h.engine.prompts
    # Staged by the runner: already the job's file, not rebased twice.
    assert prompt["1"]["inputs"]["image"] == "job-1/in.png"
    # Named by the graph but never staged: only a file of this job could match.
    assert prompt["4"]["inputs"]["image"] == "job-1/shared.png"
    assert prompt["5"]["inputs"]["image"] == "unlisted.png"


async def test_missing_input_fails_before_the_run():
    h = Harness([PromptQueued(PROMPT)])

    await h.run(h.assignment([input_file()]))

    [failed] = h.publisher.of(JobFailed)
    assert (failed.data.code, failed.data.retryable) == (
        FailureCode.INPUT_UNAVAILABLE,
        False,
    )
    assert h.engine.prompts == []


async def test_an_input_for_a_node_the_graph_lacks_fails_before_fetching():
    h = Harness([PromptQueued(PROMPT)])

    await h.run(h.assignment([input_file(node_id="9")]))

    [failed] = h.publisher.of(JobFailed)
    assert failed.data.code == FailureCode.INPUT_UNAVAILABLE
    assert "no node 9" in failed.data.message
    assert h.files.fetched == []
    assert h.engine.prompts == []
