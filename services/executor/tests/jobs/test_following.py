"""Following the engine through an attempt, through the real `JobRunner` on
hand-written fakes: what each engine event does, and the progress it sends."""

from __future__ import annotations

import pytest

from comfyserve.contracts.events import (
    FailureCode,
    JobCompleted,
    JobFailed,
    JobProgressed,
)
from comfyserve.contracts.limits import OUTPUTS_PER_EVENT
from comfyserve.executor.engine import (
    ExecutionFailed,
    ExecutionInterrupted,
    ExecutionSucceeded,
    NodeCached,
    NodeExecuted,
    NodeProgress,
    NodeStarted,
    PreviewImage,
    PromptQueued,
    PromptRejected,
)
from comfyserve.executor.errors import StorageFailed
from comfyserve.executor.jobs.models import Outcome

from .conftest import (
    ATTEMPT,
    JOB,
    PROMPT,
    Advance,
    AwaitInterrupt,
    Do,
    Harness,
    many_refs,
    ref,
)


async def test_progress_is_throttled_by_the_clock():
    h = Harness(
        [
            PromptQueued(PROMPT),
            NodeStarted(PROMPT, "2"),
            NodeProgress(PROMPT, "2", 1, 10),
            Advance(0.2),
            NodeProgress(PROMPT, "2", 2, 10),
            Advance(0.3),
            NodeProgress(PROMPT, "2", 5, 10),
            Advance(0.1),
            NodeProgress(PROMPT, "2", 6, 10),
            ExecutionSucceeded(PROMPT, {}),
        ]
    )

    await h.run()

    progressed = h.publisher.of(JobProgressed)
    assert [(p.data.step, p.data.max) for p in progressed] == [(None, None), (5, 10)]
    assert progressed[1].data.fraction == pytest.approx(0.5 / 3)


async def test_outputs_are_stored_and_published_as_each_node_finishes():
    second = ref("4", 0)
    h = Harness(
        [
            PromptQueued(PROMPT),
            NodeStarted(PROMPT, "3"),
            NodeExecuted(PROMPT, "3", (ref(), ref(index=1), ref(folder="temp"))),
            NodeExecuted(PROMPT, "4", (second,)),
            ExecutionSucceeded(PROMPT, {"3": (ref(), ref(index=1)), "4": (second,)}),
        ]
    )

    await h.run()

    assert h.journal == [
        "enqueue:executor.job.started",
        "engine:PromptQueued",
        "engine:NodeStarted",
        "enqueue:executor.job.progressed",
        "engine:NodeExecuted",
        "store:3/0",
        "store:3/1",
        "enqueue:executor.job.progressed",
        "engine:NodeExecuted",
        "store:4/0",
        "enqueue:executor.job.progressed",
        "engine:ExecutionSucceeded",
        "publish:executor.job.completed",
        "reported",
    ]
    progressed = h.publisher.of(JobProgressed)
    assert [[o.file_id for o in p.data.outputs] for p in progressed] == [
        [],
        ["file-3-0", "file-3-1"],
        ["file-4-0"],
    ]
    [completed] = h.publisher.of(JobCompleted)
    assert [o.file_id for o in completed.data.outputs] == [
        "file-3-0",
        "file-3-1",
        "file-4-0",
    ]
    # A preview is never stored, but its file is cleaned up with the rest.
    assert ref(folder="temp") in h.engine.cleaned[0].outputs


async def test_cached_run_stores_outputs_from_the_history():
    h = Harness(
        [
            PromptQueued(PROMPT),
            NodeCached(PROMPT, ("1", "2", "3")),
            ExecutionSucceeded(PROMPT, {"3": (ref(),)}),
        ]
    )

    await h.run()

    assert h.types[-1] == "executor.job.completed"
    [completed] = h.publisher.of(JobCompleted)
    assert [o.file_id for o in completed.data.outputs] == ["file-3-0"]
    assert h.publisher.of(JobProgressed)[0].data.nodes_done == 3


async def test_many_outputs_are_split_across_progress_events():
    count = 2 * OUTPUTS_PER_EVENT + 50
    refs = many_refs("3", count)
    h = Harness(
        [
            PromptQueued(PROMPT),
            NodeExecuted(PROMPT, "3", refs),
            ExecutionSucceeded(PROMPT, {"3": refs}),
        ]
    )

    result = await h.run()

    assert result.outcome == Outcome.COMPLETED
    progressed = h.publisher.of(JobProgressed)
    assert [len(p.data.outputs) for p in progressed] == [
        OUTPUTS_PER_EVENT,
        OUTPUTS_PER_EVENT,
        50,
    ]
    assert [o.index for p in progressed for o in p.data.outputs] == list(range(count))
    [completed] = h.publisher.of(JobCompleted)
    assert len(completed.data.outputs) == count


async def test_node_error_fails_without_retry():
    h = Harness(
        [
            PromptQueued(PROMPT),
            NodeStarted(PROMPT, "3"),
            ExecutionFailed(
                PROMPT,
                "3",
                "SaveImage",
                "disk full",
                "OSError",
                ("Traceback\n", "  line 1\n"),
            ),
        ]
    )

    result = await h.run()

    [failed] = h.publisher.of(JobFailed)
    assert result.failure == FailureCode.NODE_EXECUTION_ERROR
    assert failed.data.code == FailureCode.NODE_EXECUTION_ERROR
    assert (failed.data.node_id, failed.data.class_type) == ("3", "SaveImage")
    assert failed.data.message == "OSError: disk full"
    assert failed.data.traceback == "Traceback\n  line 1\n"
    assert failed.data.retryable is False
    assert h.types[-1] == "executor.job.failed"


async def test_rejected_prompt_fails_as_invalid_workflow_with_node_errors():
    body = {
        "error": {"type": "prompt_outputs_failed_validation", "message": "Bad"},
        "node_errors": {
            "1": {
                "errors": [{"message": "Value too small", "details": "width -5"}],
                "class_type": "EmptyImage",
            }
        },
    }
    h = Harness([PromptRejected(400, body)])

    result = await h.run()

    [failed] = h.publisher.of(JobFailed)
    assert result.failure == FailureCode.INVALID_WORKFLOW
    assert failed.data.retryable is False
    assert "node 1 (EmptyImage): Value too small: width -5" in failed.data.message
    assert h.engine.interrupts == []


async def test_comfyui_interrupting_on_its_own_is_a_retryable_internal_error():
    h = Harness([PromptQueued(PROMPT), ExecutionInterrupted(PROMPT, "2")])

    result = await h.run()

    assert result.failure == FailureCode.INTERNAL_ERROR
    [failed] = h.publisher.of(JobFailed)
    assert failed.data.retryable is True


async def test_a_stop_before_comfyui_answers_interrupts_once_it_does():
    h = Harness()
    h.script.extend(
        [
            Do(lambda: h.runner.request_cancel(JOB, "early")),
            PromptQueued(PROMPT),
            AwaitInterrupt(),
            ExecutionInterrupted(PROMPT, None),
        ]
    )

    result = await h.run()

    assert result.outcome == Outcome.CANCELLED
    assert set(h.engine.interrupts) == {PROMPT}


JPEG = b"\xff\xd8\xff\xe0preview"


def preview(data: bytes = JPEG) -> PreviewImage:
    return PreviewImage(content_type="image/jpeg", data=data)


async def test_previews_are_stored_at_most_once_per_interval_and_named_on_progress():
    h = Harness(
        [
            PromptQueued(PROMPT),
            NodeStarted(PROMPT, "2"),
            preview(b"first"),
            NodeProgress(PROMPT, "2", 1, 10),
            Advance(0.5),
            preview(b"too-soon"),
            Advance(0.6),
            preview(b"second"),
            NodeProgress(PROMPT, "2", 2, 10),
            ExecutionSucceeded(PROMPT, {}),
        ],
        preview_interval_s=1.0,
        progress_interval_s=60,
    )

    await h.run()

    stored = [p for _, p in h.files.previews]
    assert [p.data for p in stored] == [b"first", b"second"]
    assert [(p.sequence, p.attempt, p.content_type) for p in stored] == [
        (1, ATTEMPT, "image/jpeg"),
        (2, ATTEMPT, "image/jpeg"),
    ]
    assert [p.filename for p in stored] == [
        f"preview-{ATTEMPT}-1.jpg",
        f"preview-{ATTEMPT}-2.jpg",
    ]
    named = [p.data.preview_file_id for p in h.publisher.of(JobProgressed)]
    # Node start, then one at once for each stored preview.
    assert named == [None, "preview-1", "preview-2"]
    assert h.journal.index("preview:1") < h.journal.index("preview:2")


async def test_a_zero_interval_stores_no_preview():
    h = Harness(
        [PromptQueued(PROMPT), preview(), ExecutionSucceeded(PROMPT, {})],
        preview_interval_s=0,
    )

    result = await h.run()

    assert result.outcome is Outcome.COMPLETED
    assert h.files.previews == []


async def test_a_preview_storage_cannot_take_is_skipped_and_the_run_goes_on():
    h = Harness(
        [PromptQueued(PROMPT), preview(), ExecutionSucceeded(PROMPT, {})],
    )
    h.files.preview_error = StorageFailed("storage is away")

    result = await h.run()

    assert result.outcome is Outcome.COMPLETED
    assert all(p.data.preview_file_id is None for p in h.publisher.of(JobProgressed))
