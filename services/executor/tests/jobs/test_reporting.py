"""The events of one attempt and the text they carry, and sending the
intermediate ones without holding up the attempt."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from comfyserve.contracts.events import (
    FailureCode,
    JobCompleted,
    JobFailed,
    JobStarted,
    JobStartedData,
)
from comfyserve.contracts.limits import TEXT_FIELD_MAX_CHARS, TRACEBACK_MAX_CHARS
from comfyserve.executor.engine import (
    ExecutionFailed,
    ExecutionSucceeded,
    NodeExecuted,
    NodeStarted,
    PromptQueued,
    PromptRejected,
)
from comfyserve.executor.jobs.models import Assignment, JobResult, Outcome
from comfyserve.executor.jobs.reporting import (
    PathScrubber,
    Reporter,
    clip,
    clip_tail,
    describe_rejection,
    result_of,
)
from comfyserve.executor.jobs.state import JobState, StopReason

from .conftest import GRAPH, PROMPT, SOURCE, WORKER, DeliveryFailed, Harness, ref

ROOT = Path("/srv/comfy")


def reporter(roots: tuple[Path, ...] = (ROOT,)) -> tuple[Reporter, JobState]:
    state = JobState(
        Assignment(
            job_id="job-1",
            tenant_id="tenant-a",
            attempt=2,
            graph=GRAPH,
            timeout_seconds=60,
            deadline=datetime(2026, 1, 1, tzinfo=UTC),
            lease_seconds=15.0,
        )
    )
    scrub = PathScrubber(roots, "job-1", 2)
    return Reporter(state, worker_id=WORKER, source=SOURCE, scrub=scrub), state


def test_clip_keeps_the_start_and_clip_tail_the_end():
    text = "a" * 10 + "b" * 10

    assert clip(text, 20) == text
    assert clip(text, 8) == "aaaaaaa…"
    assert clip_tail(text, 8) == "…bbbbbbb"
    assert len(clip("x" * 10_000)) == TEXT_FIELD_MAX_CHARS
    assert len(clip_tail("x" * 100_000)) == TRACEBACK_MAX_CHARS


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("cannot read /srv/comfy/input/job-1/photo.png", "cannot read photo.png"),
        ("cannot read 'input/job-1/photo.png'", "cannot read 'photo.png'"),
        ("wrote job-1-2/x_00001_.png", "wrote x_00001_.png"),
        ("/var/tmp/output/job-1-2/x.png exists", "x.png exists"),
        ('File "/srv/comfy/nodes.py", line 3', 'File "nodes.py", line 3'),
        ("in /srv/comfy", "in "),
        ("job-10/a.png is another job's", "job-10/a.png is another job's"),
        ("nothing local here", "nothing local here"),
    ],
)
def test_path_scrubber_leaves_only_names_the_job_knows(text, shown):
    scrub = PathScrubber((ROOT,), "job-1", 2)

    assert scrub(text) == shown


def test_path_scrubber_removes_the_longest_root_first():
    scrub = PathScrubber((ROOT, ROOT / "models"), "job-1", 2)

    assert scrub("missing /srv/comfy/models/sd.safetensors") == (
        "missing sd.safetensors"
    )


def test_failed_scrubs_then_clips_message_and_traceback():
    report, _ = reporter()
    message = "at /srv/comfy/input/job-1/in.png: " + "m" * TEXT_FIELD_MAX_CHARS
    traceback = "t" * TRACEBACK_MAX_CHARS + "\nError: /srv/comfy/input/job-1/in.png"

    failed = report.failed(
        FailureCode.NODE_EXECUTION_ERROR,
        message,
        retryable=False,
        traceback=traceback,
    )

    assert failed.data.message.startswith("at in.png: mmm")
    assert len(failed.data.message) == TEXT_FIELD_MAX_CHARS
    assert failed.data.traceback is not None
    assert failed.data.traceback.endswith("\nError: in.png")
    assert len(failed.data.traceback) == TRACEBACK_MAX_CHARS
    assert (failed.subject, failed.tenant_id, failed.source) == (
        "job-1",
        "tenant-a",
        SOURCE,
    )
    assert (failed.data.attempt, failed.data.worker_id) == (2, WORKER)


def test_node_failed_names_the_class_from_the_graph_when_comfyui_does_not():
    report, _ = reporter()

    failed = report.node_failed(ExecutionFailed("p", "2", None, "bad", ""))

    assert failed.data.class_type == "ImageInvert"
    assert failed.data.message == "Error: bad"
    assert failed.data.traceback is None


def test_cancelled_carries_the_stop_reason():
    report, state = reporter()
    assert report.cancelled().data.reason == "cancel requested"

    state.request_stop(StopReason.CANCEL, "user asked")
    cancelled = report.cancelled()

    assert (cancelled.data.reason, cancelled.data.attempt) == ("user asked", 2)


def test_completed_never_reports_a_negative_duration():
    report, _ = reporter()

    assert report.completed(-5, []).data.duration_ms == 0


def test_event_builds_any_job_event_for_this_attempt():
    report, _ = reporter()

    started = report.event(JobStarted, JobStartedData(attempt=2, worker_id=WORKER))

    assert (started.subject, started.tenant_id) == ("job-1", "tenant-a")


@pytest.mark.parametrize(
    ("rejected", "message"),
    [
        (
            PromptRejected(
                400,
                {
                    "error": {
                        "type": "invalid_prompt",
                        "message": "Bad",
                        "details": "x",
                    },
                    "node_errors": {
                        "1": {
                            "errors": [{"message": "Too small", "details": "w -5"}],
                            "class_type": "EmptyImage",
                        },
                        "2": "not a dict",
                    },
                },
            ),
            "Bad: x | node 1 (EmptyImage): Too small: w -5",
        ),
        (PromptRejected(400, {"error": "no outputs"}), "no outputs"),
        (PromptRejected(500, "boom"), "ComfyUI rejected the prompt (HTTP 500): boom"),
        (PromptRejected(400, {"other": 1}), '{"other": 1}'),
    ],
)
def test_describe_rejection(rejected, message):
    assert describe_rejection(rejected) == message


def test_result_of_maps_the_final_event_to_the_outcome():
    report, _ = reporter()

    assert result_of(None, 1.0) == JobResult(Outcome.ABANDONED, duration_s=1.0)
    assert result_of(report.completed(5, []), 1.0).outcome == Outcome.COMPLETED
    assert result_of(report.cancelled(), 1.0).outcome == Outcome.CANCELLED
    assert result_of(
        report.failed(FailureCode.TIMEOUT, "late", retryable=False), 1.0
    ) == JobResult(Outcome.FAILED, FailureCode.TIMEOUT, 1.0)
    started = report.event(JobStarted, JobStartedData(attempt=2, worker_id=WORKER))
    with pytest.raises(TypeError, match="JobStarted does not end a job"):
        result_of(started, 1.0)


async def test_failure_text_is_scrubbed_of_machine_paths_and_clipped():
    root = Path("/srv/comfy")
    staged = f"{root}/input/job-1/in.png"
    frames = ['  File "/srv/comfy/nodes.py", line 1, in load\n'] * 1000
    h = Harness(
        [
            PromptQueued(PROMPT),
            ExecutionFailed(
                PROMPT,
                "1",
                "LoadImage",
                f"cannot identify image file {staged!r} " + "x" * TEXT_FIELD_MAX_CHARS,
                "UnidentifiedImageError",
                ("Traceback (most recent call last):\n", *frames, f"Error: {staged}\n"),
            ),
        ],
        local_roots=(root,),
    )

    await h.run()

    [failed] = h.publisher.of(JobFailed)
    message, traceback = failed.data.message, failed.data.traceback or ""
    assert message.startswith(
        "UnidentifiedImageError: cannot identify image file 'in.png' xxx"
    )
    assert len(message) == TEXT_FIELD_MAX_CHARS
    assert message.endswith("…")
    # A traceback's end says what failed: its start is what goes.
    assert len(traceback) == TRACEBACK_MAX_CHARS
    assert traceback.startswith("…")
    assert traceback.endswith('  File "nodes.py", line 1, in load\nError: in.png\n')
    assert "/srv" not in message + traceback


async def test_intermediate_events_that_cannot_be_queued_do_not_fail_the_attempt():
    h = Harness(
        [
            PromptQueued(PROMPT),
            NodeStarted(PROMPT, "3"),
            NodeExecuted(PROMPT, "3", (ref(),)),
            ExecutionSucceeded(PROMPT, {"3": (ref(),)}),
        ]
    )
    h.publisher.refuse = ConnectionError("broker unreachable")

    result = await h.run()

    assert result.outcome == Outcome.COMPLETED
    assert h.types == ["executor.job.completed"]
    [completed] = h.publisher.of(JobCompleted)
    assert [o.file_id for o in completed.data.outputs] == ["file-3-0"]


async def test_failed_intermediate_deliveries_do_not_fail_the_attempt():
    h = Harness(
        [PromptQueued(PROMPT), NodeStarted(PROMPT, "1"), ExecutionSucceeded(PROMPT, {})]
    )
    h.publisher.fail_deliveries = DeliveryFailed("broker gone")

    result = await h.run()

    assert result.outcome == Outcome.COMPLETED
    assert h.journal[-2:] == ["publish:executor.job.completed", "reported"]
