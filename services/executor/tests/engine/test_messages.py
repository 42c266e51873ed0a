import struct

import pytest

from comfyserve.executor.engine.events import (
    ExecutionFailed,
    ExecutionInterrupted,
    ExecutionStarted,
    ExecutionSucceeded,
    NodeCached,
    NodeExecuted,
    NodeProgress,
    NodeStarted,
    PreviewImage,
)
from comfyserve.executor.engine.messages import (
    CompletionSignal,
    outcome_from_history,
    parse_binary,
    parse_message,
)

P = "58e8e858-0000-4000-8000-000000000001"
OTHER = "11111111-0000-4000-8000-000000000002"
IMAGE = {"filename": "obs_00001_.png", "subfolder": "", "type": "output"}


def msg(kind, **data):
    return {"type": kind, "data": data}


def feed(messages):
    """Parse until the first terminal result, like the client does."""
    results = []
    for message in messages:
        result = parse_message(message, P)
        if result is None:
            continue
        results.append(result)
        if isinstance(
            result, CompletionSignal | ExecutionFailed | ExecutionInterrupted
        ):
            break
    return results


G1_NORMAL = [
    {
        "type": "status",
        "data": {"status": {"exec_info": {"queue_remaining": 0}}, "sid": "c"},
    },
    msg("status", status={"exec_info": {"queue_remaining": 1}}),
    msg("status", status={"exec_info": {"queue_remaining": 1}}),
    msg("execution_start", prompt_id=P),
    msg("execution_cached", nodes=[], prompt_id=P),
    msg("executing", node="1", prompt_id=P),
    msg("executing", node="2", prompt_id=P),
    msg("executing", node="3", prompt_id=P),
    msg("executed", node="3", output={"images": [IMAGE]}, prompt_id=P),
    msg("executing", node="4", prompt_id=P),
    msg("progress", value=0, max=1, node="4", prompt_id=P),
    msg("status", status={"exec_info": {"queue_remaining": 0}}),
    msg("executing", node=None, prompt_id=P),
]


def test_g1_normal_run_ends_on_executing_null():
    results = feed(G1_NORMAL)
    assert results[:2] == [ExecutionStarted(P), NodeCached(P, ())]
    assert [r.node_id for r in results if isinstance(r, NodeStarted)] == [
        "1",
        "2",
        "3",
        "4",
    ]
    executed = next(r for r in results if isinstance(r, NodeExecuted))
    assert executed.node_id == "3"
    assert executed.outputs[0].filename == "obs_00001_.png"
    assert NodeProgress(P, "4", 0.0, 1.0) in results
    assert results[-1] == CompletionSignal(P, success_signalled=False)


def test_g2_run_stops_at_execution_success_before_final_executing_null():
    messages = [
        msg("execution_start", prompt_id=P, timestamp=1),
        msg("execution_cached", nodes=[], prompt_id=P, timestamp=1),
        msg("executing", node="1", display_node="1", prompt_id=P),
        msg(
            "progress_state",
            prompt_id=P,
            nodes={"1": {"value": 0, "max": 1, "state": "running", "node_id": "1"}},
        ),
        msg(
            "executed",
            node="3",
            display_node="3",
            output={"images": [IMAGE]},
            prompt_id=P,
        ),
        msg("execution_success", prompt_id=P, timestamp=2),
        msg("status", status={"exec_info": {"queue_remaining": 0}}),
        msg("executing", node=None, display_node=None, prompt_id=P),
    ]
    results = feed(messages)
    # progress_state duplicates progress and is not turned into events.
    assert [type(r) for r in results] == [
        ExecutionStarted,
        NodeCached,
        NodeStarted,
        NodeExecuted,
        CompletionSignal,
    ]
    assert results[-1] == CompletionSignal(P, success_signalled=True)


def test_g1_cached_run_has_no_node_events():
    messages = [
        msg("status", status={"exec_info": {"queue_remaining": 1}}),
        msg("execution_start", prompt_id=P),
        msg("execution_cached", nodes=["1", "2", "3"], prompt_id=P),
        msg("status", status={"exec_info": {"queue_remaining": 0}}),
        msg("executing", node=None, prompt_id=P),
    ]
    assert feed(messages) == [
        ExecutionStarted(P),
        NodeCached(P, ("1", "2", "3")),
        CompletionSignal(P, success_signalled=False),
    ]


def test_g2_cached_run_resends_executed():
    messages = [
        msg("execution_start", prompt_id=P, timestamp=1),
        msg("execution_cached", nodes=["1", "2", "3"], prompt_id=P, timestamp=1),
        msg(
            "executed",
            node="3",
            display_node="3",
            output={"images": [IMAGE]},
            prompt_id=P,
        ),
        msg("execution_success", prompt_id=P, timestamp=2),
    ]
    results = feed(messages)
    assert isinstance(results[2], NodeExecuted)
    assert results[2].outputs[0].node_id == "3"


def test_runtime_error_is_terminal_with_details():
    messages = [
        msg("execution_start", prompt_id=P),
        msg("executing", node="3", prompt_id=P),
        msg(
            "execution_error",
            prompt_id=P,
            node_id="3",
            node_type="SaveImage",
            executed=["1", "2"],
            exception_message="Saving image outside the output folder is not allowed.",
            exception_type="Exception",
            traceback=["  File x\n", "Exception\n"],
            current_inputs={"images": ["[...]"]},
            current_outputs=[],
        ),
        msg("status", status={"exec_info": {"queue_remaining": 0}}),
        msg("executing", node=None, prompt_id=P),
    ]
    failed = feed(messages)[-1]
    assert failed == ExecutionFailed(
        prompt_id=P,
        node_id="3",
        node_type="SaveImage",
        exception_message="Saving image outside the output folder is not allowed.",
        exception_type="Exception",
        traceback=("  File x\n", "Exception\n"),
        executed=("1", "2"),
    )


def test_interrupted_is_terminal():
    messages = [
        msg("executing", node="4", prompt_id=P),
        msg("progress", value=3, max=300, node="4", prompt_id=P),
        msg(
            "execution_interrupted",
            prompt_id=P,
            node_id="4",
            node_type="SaveImageWebsocket",
            executed=["1", "2"],
        ),
        msg("executing", node=None, prompt_id=P),
    ]
    assert feed(messages)[-1] == ExecutionInterrupted(P, "4", "SaveImageWebsocket")


def test_other_prompts_and_unknown_messages_are_ignored():
    ignored = [
        msg("executing", node=None, prompt_id=OTHER),
        msg("execution_success", prompt_id=OTHER),
        msg("executing", node="7"),  # the reconnect hello carries no prompt id
        msg("feature_flags", supports_preview_metadata=True),
        msg("my_custom_node_event", prompt_id=P, anything=1),
        "not an object",
        {"type": "executing"},
    ]
    assert [parse_message(m, P) for m in ignored] == [None] * len(ignored)


def test_history_success_lists_outputs_even_for_a_cached_run():
    entry = {
        "prompt": [1, P, {}, {"client_id": "c"}, ["3"]],
        "outputs": {"3": {"images": [IMAGE]}},
        "status": {
            "status_str": "success",
            "completed": True,
            "messages": [
                ["execution_start", {"prompt_id": P}],
                ["execution_cached", {"nodes": ["1", "2", "3"], "prompt_id": P}],
            ],
        },
    }
    outcome = outcome_from_history(P, entry)
    assert isinstance(outcome, ExecutionSucceeded)
    assert [ref.filename for ref in outcome.outputs] == ["obs_00001_.png"]
    assert outcome.previews == ()


def test_history_without_status_counts_as_success():
    outcome = outcome_from_history(P, {"outputs": {}, "status": None})
    assert outcome == ExecutionSucceeded(P, {}, {})


def test_history_error_and_interruption_differ_by_last_message():
    def entry(last):
        return {
            "outputs": {},
            "status": {
                "status_str": "error",
                "completed": False,
                "messages": [["execution_start", {"prompt_id": P}], last],
            },
        }

    failed = outcome_from_history(
        P,
        entry(
            [
                "execution_error",
                {
                    "prompt_id": P,
                    "node_id": "3",
                    "node_type": "SaveImage",
                    "exception_message": "boom",
                    "exception_type": "Exception",
                    "traceback": ["t"],
                    "executed": ["1"],
                },
            ]
        ),
    )
    assert isinstance(failed, ExecutionFailed)
    assert (failed.node_id, failed.exception_message, failed.traceback) == (
        "3",
        "boom",
        ("t",),
    )
    interrupted = outcome_from_history(
        P, entry(["execution_interrupted", {"prompt_id": P, "node_id": "4"}])
    )
    assert interrupted == ExecutionInterrupted(P, "4", None)


@pytest.mark.parametrize(
    "frame",
    [
        b"",
        b"\x00\x00\x00\x01",
        struct.pack(">II", 1, 1),
        struct.pack(">II", 1, 9) + b"unknown format",
        struct.pack(">II", 3, 1) + b"3text",
        struct.pack(">II", 4, 99) + b"{}image",
        struct.pack(">II", 4, 3) + b"{x}image",
        struct.pack(">II", 4, 2) + b"{}",
        struct.pack(">II", 4, 26) + b'{"image_type": "image/gif"}image',
    ],
)
def test_frames_that_are_no_preview_of_ours_are_none(frame):
    assert parse_binary(frame, P) is None


def test_a_type_4_preview_without_a_prompt_id_is_taken_as_ours():
    metadata = b'{"image_type": "image/jpeg", "node_id": 7}'
    frame = struct.pack(">II", 4, len(metadata)) + metadata + b"jpeg"

    assert parse_binary(frame, P) == PreviewImage("image/jpeg", b"jpeg", "7")
