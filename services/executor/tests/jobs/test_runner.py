"""One attempt through the real `JobRunner`, against hand-written fakes of the
engine, Kafka, storage and time: its life from start to final event, stops,
deadlines, a hung or crashed engine, clean-up. What each stage does is tested
beside its module (`test_staging`, `test_following`, `test_storing`,
`test_reporting`)."""

from __future__ import annotations

import asyncio
import hashlib
from datetime import timedelta

import pytest

from comfyserve.contracts.events import (
    FailureCode,
    JobCancelled,
    JobCompleted,
    JobFailed,
    JobProgressed,
    JobStarted,
)
from comfyserve.contracts.workflow_format import RUN_MARK_INPUT
from comfyserve.executor.engine import (
    EngineCrashed,
    ExecutionInterrupted,
    ExecutionSucceeded,
    JobFiles,
    NodeExecuted,
    NodeStarted,
    OutputKind,
    PromptQueued,
    UnexpectedResponse,
)
from comfyserve.executor.errors import StorageFailed
from comfyserve.executor.jobs.models import Outcome
from comfyserve.executor.jobs.state import StopReason

from .conftest import (
    ATTEMPT,
    GRACE_S,
    GRAPH,
    JOB,
    PROMPT,
    TENANT,
    TIMEOUT_S,
    WORKER,
    Advance,
    AwaitInterrupt,
    DeliveryFailed,
    Do,
    Harness,
    eventually,
    input_file,
    png,
    ref,
)


async def test_success_stages_inputs_runs_stores_and_completes():
    h = Harness(
        [
            PromptQueued(PROMPT),
            NodeStarted(PROMPT, "1"),
            Advance(1),
            NodeStarted(PROMPT, "2"),
            Advance(1),
            NodeStarted(PROMPT, "3"),
            NodeExecuted(PROMPT, "3", (ref(),)),
            Advance(1),
            ExecutionSucceeded(PROMPT, {"3": (ref(),)}),
        ]
    )
    h.files.inputs["in-1"] = b"abc"

    result = await h.run(h.assignment([input_file()]))

    assert result.outcome == Outcome.COMPLETED
    assert result.duration_s == 3.0
    assert h.types == [
        "executor.job.started",
        "executor.job.progressed",
        "executor.job.progressed",
        "executor.job.progressed",
        "executor.job.progressed",
        "executor.job.completed",
    ]
    [started] = h.publisher.of(JobStarted)
    assert (started.data.attempt, started.data.worker_id) == (ATTEMPT, WORKER)
    assert (started.subject, started.tenant_id) == (JOB, TENANT)
    assert h.files.fetched == [(TENANT, "in-1")]
    assert h.engine.uploads == {"job-1/in.png": b"abc"}
    [prompt] = h.engine.prompts
    assert prompt["1"]["inputs"]["image"] == "job-1/in.png"
    assert prompt["3"]["inputs"]["filename_prefix"] == "job-1-2/x"
    assert prompt["3"]["inputs"][RUN_MARK_INPUT] == "job-1:2"
    assert GRAPH["3"]["inputs"] == {"images": ["2", 0], "filename_prefix": "x"}
    # The engine's own deadline is only a backstop behind the runner's guard.
    assert h.engine.deadlines == [1000.0 + TIMEOUT_S + GRACE_S + 5.0]
    progressed = h.publisher.of(JobProgressed)
    assert [(p.data.node_id, p.data.class_type) for p in progressed[:3]] == [
        ("1", "LoadImage"),
        ("2", "ImageInvert"),
        ("3", "SaveImage"),
    ]
    assert [p.data.nodes_done for p in progressed] == [0, 1, 2, 3]
    assert progressed[-1].data.fraction == 1.0
    assert all(p.data.nodes_total == 3 for p in progressed)
    [completed] = h.publisher.of(JobCompleted)
    [output] = completed.data.outputs
    assert (output.node_id, output.width, output.height) == ("3", 4, 3)
    assert completed.data.duration_ms == 3000
    [(tenant, stored)] = h.files.stored
    assert (tenant, stored.job_id, stored.attempt) == (TENANT, JOB, ATTEMPT)
    assert stored.sha256 == hashlib.sha256(png(4, 3)).hexdigest()
    assert h.engine.cleaned == [
        JobFiles(inputs=("job-1/in.png",), outputs=(ref(), ref()))
    ]
    assert h.journal[-2:] == ["publish:executor.job.completed", "reported"]
    assert h.runner.current_job_id is None


async def test_an_oversized_final_event_becomes_output_limit_exceeded():
    # Each progress event fits its topic; the completed event, listing them
    # all, does not.
    long_name = "n" * 150_000
    nodes = [str(node) for node in range(3, 11)]
    h = Harness(
        [
            PromptQueued(PROMPT),
            *(
                NodeExecuted(
                    PROMPT, node, (ref(node, kind=OutputKind.TEXT, filename=long_name),)
                )
                for node in nodes
            ),
            ExecutionSucceeded(PROMPT, {}),
        ]
    )

    result = await h.run()

    assert (result.outcome, result.failure) == (
        Outcome.FAILED,
        FailureCode.OUTPUT_LIMIT_EXCEEDED,
    )
    assert len(h.publisher.of(JobProgressed)) == len(nodes)
    assert h.publisher.of(JobCompleted) == []
    [failed] = h.publisher.of(JobFailed)
    assert failed.data.retryable is False
    assert failed.data.message.startswith("the job's outcome is too large to report")
    assert h.journal[-2:] == ["publish:executor.job.failed", "reported"]


async def test_engine_crash_restarts_the_engine_and_allows_a_retry():
    h = Harness([PromptQueued(PROMPT), NodeStarted(PROMPT, "1"), EngineCrashed(-9)])

    await h.run()

    [failed] = h.publisher.of(JobFailed)
    assert failed.data.code == FailureCode.ENGINE_CRASHED
    assert failed.data.retryable is True
    assert h.keeper.restarts == ["ComfyUI exited with code -9"]
    # The engine is back before the job is reported, so the retry may land here.
    assert h.journal[-3:] == ["restart", "publish:executor.job.failed", "reported"]


async def test_a_run_that_ends_without_an_outcome_restarts_the_engine():
    h = Harness([PromptQueued(PROMPT), NodeStarted(PROMPT, "1")])

    result = await h.run()

    assert result.failure == FailureCode.ENGINE_CRASHED
    assert len(h.keeper.restarts) == 1
    [failed] = h.publisher.of(JobFailed)
    assert failed.data.retryable is True


async def test_other_engine_errors_are_retryable_without_a_restart():
    h = Harness([UnexpectedResponse("/prompt", 500)])

    await h.run()

    [failed] = h.publisher.of(JobFailed)
    assert (failed.data.code, failed.data.retryable) == (
        FailureCode.ENGINE_CRASHED,
        True,
    )
    assert failed.data.message == "/prompt answered HTTP 500"
    assert h.keeper.restarts == []


async def test_a_bug_still_ends_the_attempt_as_a_retryable_internal_error():
    h = Harness([PromptQueued(PROMPT), KeyError("node")])

    result = await h.run()

    assert result.failure == FailureCode.INTERNAL_ERROR
    [failed] = h.publisher.of(JobFailed)
    assert failed.data.retryable is True
    assert "KeyError" in failed.data.message
    assert h.runner.current_job_id is None


async def test_cancel_interrupts_the_current_prompt_and_reports_cancelled():
    h = Harness(
        [
            PromptQueued(PROMPT),
            NodeStarted(PROMPT, "2"),
            AwaitInterrupt(),
            ExecutionInterrupted(PROMPT, "2"),
        ]
    )
    task = h.start()
    await h.engine.blocked.wait()

    assert h.runner.request_cancel("another-job", "not ours") is False
    assert h.runner.request_cancel(JOB, "not yours", tenant_id="tenant-b") is False
    assert h.engine.interrupts == []
    assert h.runner.request_cancel(JOB, "user asked", tenant_id=TENANT) is True
    result = await task

    assert result.outcome == Outcome.CANCELLED
    assert h.engine.interrupts == [PROMPT]
    assert h.types[-1] == "executor.job.cancelled"
    [cancelled] = h.publisher.of(JobCancelled)
    assert (cancelled.data.reason, cancelled.data.attempt) == ("user asked", ATTEMPT)
    assert h.keeper.restarts == []


async def test_cancel_while_staging_never_runs_the_prompt():
    h = Harness([PromptQueued(PROMPT)])
    h.files.inputs["in-1"] = b"abc"
    h.files.gate = asyncio.Event()
    task = h.start(h.assignment([input_file()]))
    await eventually(lambda: h.files.fetched)

    assert h.runner.request_cancel(JOB, "changed my mind") is True
    h.files.gate.set()
    result = await task

    assert result.outcome == Outcome.CANCELLED
    assert h.engine.prompts == []
    assert h.engine.cleaned == [JobFiles(inputs=("job-1/in.png",))]


async def test_a_stop_for_another_attempt_is_ignored():
    h = Harness(
        [PromptQueued(PROMPT), AwaitInterrupt(), ExecutionInterrupted(PROMPT, None)]
    )
    task = h.start()
    await h.engine.blocked.wait()

    assert h.runner.request_stop(JOB, ATTEMPT - 1, StopReason.SUPERSEDED) is False
    assert h.runner.request_stop("job-9", None, StopReason.SUPERSEDED) is False
    assert h.engine.interrupts == []
    assert h.runner.request_stop(JOB, ATTEMPT, StopReason.CANCEL, "stop") is True

    assert (await task).outcome == Outcome.CANCELLED


async def test_a_superseded_attempt_stops_and_reports_nothing():
    h = Harness(
        [
            PromptQueued(PROMPT),
            NodeStarted(PROMPT, "2"),
            AwaitInterrupt(),
            ExecutionInterrupted(PROMPT, "2"),
        ]
    )
    task = h.start()
    await h.engine.blocked.wait()

    assert h.runner.request_stop(JOB, ATTEMPT, StopReason.SUPERSEDED) is True
    result = await task

    assert result.outcome == Outcome.ABANDONED
    assert h.engine.interrupts == [PROMPT]
    assert h.types == ["executor.job.started", "executor.job.progressed"]
    assert "reported" not in h.journal
    assert len(h.engine.cleaned) == 1


@pytest.mark.parametrize(
    ("ending", "storage_error", "restarts"),
    [
        pytest.param(
            ExecutionSucceeded(PROMPT, {"3": (ref(),)}), None, 0, id="comfyui-finished"
        ),
        pytest.param(
            NodeExecuted(PROMPT, "3", (ref(),)),
            StorageFailed("attempt 2 is superseded"),
            0,
            id="storage-fenced",
        ),
        pytest.param(EngineCrashed(-9), None, 1, id="engine-crashed"),
    ],
)
async def test_a_superseded_attempt_reports_nothing_however_its_run_ends(
    ending, storage_error, restarts
):
    # The lease is lost while ComfyUI is already finishing, while the storage
    # service refuses the stale attempt's outputs, or just as ComfyUI dies:
    # the job's new owner reports, never this attempt.
    h = Harness()
    h.files.output_error = storage_error
    h.script.extend(
        [
            PromptQueued(PROMPT),
            Do(lambda: h.runner.request_stop(JOB, ATTEMPT, StopReason.SUPERSEDED)),
            ending,
        ]
    )

    result = await h.run()

    assert result.outcome == Outcome.ABANDONED
    assert h.types == ["executor.job.started"]
    assert "reported" not in h.journal
    assert len(h.keeper.restarts) == restarts


async def test_the_final_event_waits_for_earlier_deliveries_to_settle():
    h = Harness(
        [PromptQueued(PROMPT), NodeStarted(PROMPT, "1"), ExecutionSucceeded(PROMPT, {})]
    )
    h.publisher.hold = True
    task = h.start()
    await eventually(lambda: h.engine.cleaned)
    for _ in range(20):
        await asyncio.sleep(0)

    assert len(h.publisher.open) == 2
    assert h.publisher.of(JobCompleted) == []
    # Settled either way: a failed one is not waited for twice.
    h.publisher.open[0].set_result(None)
    h.publisher.open[1].set_exception(DeliveryFailed("broker gone"))
    result = await asyncio.wait_for(task, 5)

    assert result.outcome == Outcome.COMPLETED
    assert h.journal[-2:] == ["publish:executor.job.completed", "reported"]


async def test_a_failed_clean_up_does_not_change_the_outcome():
    h = Harness([PromptQueued(PROMPT), ExecutionSucceeded(PROMPT, {})])
    h.engine.cleanup_error = OSError("busy")

    result = await h.run()

    assert result.outcome == Outcome.COMPLETED


async def test_timeout_interrupts_and_fails_without_restart_when_comfyui_obeys():
    h = Harness(
        [PromptQueued(PROMPT), AwaitInterrupt(), ExecutionInterrupted(PROMPT, None)]
    )
    task = h.start()
    await h.engine.blocked.wait()
    await h.clock.sleeping(1)

    h.clock.advance(TIMEOUT_S)
    result = await task

    assert result.failure == FailureCode.TIMEOUT
    assert h.engine.interrupts == [PROMPT]
    assert h.keeper.restarts == []
    [failed] = h.publisher.of(JobFailed)
    assert failed.data.retryable is False


async def test_timeout_restarts_the_engine_when_the_interrupt_is_ignored():
    h = Harness([PromptQueued(PROMPT), AwaitInterrupt(honour=False)])
    task = h.start()
    await h.engine.blocked.wait()
    await h.clock.sleeping(1)

    h.clock.advance(TIMEOUT_S)
    await h.clock.sleeping(1)
    assert h.engine.interrupts == [PROMPT]
    assert not task.done()
    h.clock.advance(GRACE_S)
    result = await task

    assert result.failure == FailureCode.TIMEOUT
    assert h.keeper.restarts == [f"prompt {PROMPT} ignored an interrupt"]
    assert h.journal[-3:] == ["restart", "publish:executor.job.failed", "reported"]
    assert len(h.engine.cleaned) == 1


async def test_the_earlier_of_deadline_and_timeout_applies():
    h = Harness(
        [PromptQueued(PROMPT), AwaitInterrupt(), ExecutionInterrupted(PROMPT, None)]
    )
    assignment = h.assignment(deadline=h.clock.now() + timedelta(seconds=5))
    task = h.start(assignment)
    await h.engine.blocked.wait()
    await h.clock.sleeping(1)

    h.clock.advance(5)
    result = await task

    assert result.failure == FailureCode.TIMEOUT
    assert h.engine.deadlines == [1000.0 + 5 + GRACE_S + 5.0]


async def test_a_deadline_already_past_fails_without_running():
    h = Harness([PromptQueued(PROMPT)])

    result = await h.run(h.assignment(deadline=h.clock.now() - timedelta(seconds=1)))

    assert result.failure == FailureCode.TIMEOUT
    assert h.types == ["executor.job.started", "executor.job.failed"]
    [failed] = h.publisher.of(JobFailed)
    assert (failed.data.message, failed.data.retryable) == (
        "the job's deadline passed before it started",
        False,
    )
    assert h.engine.prompts == []


async def test_shutdown_leaves_no_final_event_and_cleans_up():
    h = Harness([PromptQueued(PROMPT), AwaitInterrupt(honour=False)])
    task = h.start()
    await h.engine.blocked.wait()

    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    assert h.types == ["executor.job.started"]
    assert "reported" not in h.journal
    assert h.engine.interrupts == [PROMPT]
    assert len(h.engine.cleaned) == 1
    assert h.runner.current_job_id is None


async def test_the_partner_key_reaches_the_engine_and_no_event():
    h = Harness([PromptQueued(PROMPT), ExecutionSucceeded(PROMPT, {})])
    assignment = h.assignment(partner_key="pk-runner-secret")

    result = await h.run(assignment)

    assert result.outcome is Outcome.COMPLETED
    assert h.engine.partner_keys == ["pk-runner-secret"]
    assert "pk-runner-secret" not in repr(assignment)
    assert all(
        "pk-runner-secret" not in e.model_dump_json() for e in h.publisher.events
    )
