"""Storing an attempt's outputs, through the real `JobRunner` on hand-written
fakes: under the attempt, once each, within the job's limit."""

from __future__ import annotations

import pytest

from comfyserve.contracts.events import (
    FailureCode,
    JobCompleted,
    JobFailed,
    JobProgressed,
    JobStarted,
)
from comfyserve.contracts.limits import MAX_OUTPUTS_PER_JOB
from comfyserve.contracts.workflow_format import RUN_MARK_INPUT
from comfyserve.executor.engine import (
    ExecutionInterrupted,
    ExecutionSucceeded,
    NodeExecuted,
    PromptQueued,
)
from comfyserve.executor.errors import OutputRejected, StorageFailed
from comfyserve.executor.jobs.models import Outcome

from .conftest import PROMPT, AwaitInterrupt, Harness, many_refs, ref


async def test_each_attempt_writes_and_stores_under_its_own_attempt():
    h = Harness(
        [
            PromptQueued(PROMPT),
            NodeExecuted(PROMPT, "3", (ref(),)),
            ExecutionSucceeded(PROMPT, {"3": (ref(),)}),
        ]
    )

    await h.run(h.assignment(attempt=5))

    assert h.engine.prompts[0]["3"]["inputs"]["filename_prefix"] == "job-1-5/x"
    assert h.engine.prompts[0]["3"]["inputs"][RUN_MARK_INPUT] == "job-1:5"
    assert [output.attempt for _, output in h.files.stored] == [5]
    [started] = h.publisher.of(JobStarted)
    [progressed] = h.publisher.of(JobProgressed)
    [completed] = h.publisher.of(JobCompleted)
    assert (
        started.data.attempt,
        progressed.data.attempt,
        completed.data.attempt,
    ) == (5, 5, 5)


async def test_more_outputs_than_a_job_may_have_stop_the_attempt():
    h = Harness(
        [
            PromptQueued(PROMPT),
            NodeExecuted(PROMPT, "3", many_refs("3", MAX_OUTPUTS_PER_JOB)),
            NodeExecuted(PROMPT, "4", many_refs("4", 1)),
            AwaitInterrupt(),
            ExecutionInterrupted(PROMPT, "4"),
        ]
    )

    result = await h.run()

    assert (result.outcome, result.failure) == (
        Outcome.FAILED,
        FailureCode.OUTPUT_LIMIT_EXCEEDED,
    )
    assert len(h.files.stored) == MAX_OUTPUTS_PER_JOB
    assert h.engine.interrupts == [PROMPT]
    [failed] = h.publisher.of(JobFailed)
    assert failed.data.retryable is False
    assert str(MAX_OUTPUTS_PER_JOB) in failed.data.message
    assert h.keeper.restarts == []


async def test_a_finished_run_with_too_many_outputs_fails():
    refs = many_refs("3", MAX_OUTPUTS_PER_JOB + 1)
    h = Harness([PromptQueued(PROMPT), ExecutionSucceeded(PROMPT, {"3": refs})])

    result = await h.run()

    assert result.failure == FailureCode.OUTPUT_LIMIT_EXCEEDED
    assert len(h.files.stored) == MAX_OUTPUTS_PER_JOB
    assert h.publisher.of(JobCompleted) == []


@pytest.mark.parametrize(
    ("error", "retryable"),
    [
        (StorageFailed("object store unreachable"), True),
        (OutputRejected("too big"), False),
    ],
)
async def test_storage_errors_fail_the_attempt(error, retryable):
    h = Harness([PromptQueued(PROMPT), NodeExecuted(PROMPT, "3", (ref(),))])
    h.files.output_error = error

    await h.run()

    [failed] = h.publisher.of(JobFailed)
    assert (failed.data.code, failed.data.retryable) == (
        FailureCode.STORAGE_ERROR,
        retryable,
    )
    assert h.keeper.restarts == []
