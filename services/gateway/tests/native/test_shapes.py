"""The native `execution_error` of a failed job, which /history and /ws both
send (API.md §B.5.3)."""

import pytest

from comfyserve.contracts.pb.workflow.v1 import workflow_pb2 as wf
from comfyserve.gateway.native import shapes, ws_frames

SAME_FIELDS = (
    "node_id",
    "node_type",
    "executed",
    "exception_message",
    "exception_type",
    "traceback",
    "current_inputs",
    "current_outputs",
)


def failed(**error: object) -> wf.Job:
    return wf.Job(
        id="7f3d2c1b-9a8e-4d6f-b012-3c4d5e6f7a8b",
        status=wf.JOB_STATUS_FAILED,
        error=wf.JobError(**error),  # type: ignore[arg-type]
    )


def test_a_node_error_splits_comfyuis_exception_back_into_type_and_message() -> None:
    job = failed(
        code="node_execution_error",
        message="RuntimeError: sizes should be greater than 0: a: b",
        node_id="3",
        class_type="ImageBlur",
        traceback='  File "nodes.py", line 1\n  raise RuntimeError\n',
    )

    assert shapes.execution_error(job, ["1", "2", "3"]) == {
        "node_id": "3",
        "node_type": "ImageBlur",
        # The failing node did not finish.
        "executed": ["1", "2"],
        "exception_message": "sizes should be greater than 0: a: b",
        "exception_type": "RuntimeError",
        "traceback": ['  File "nodes.py", line 1\n', "  raise RuntimeError\n"],
        "current_inputs": {},
        "current_outputs": [],
    }


@pytest.mark.parametrize(
    ("code", "message", "kind", "text"),
    [
        # Not ComfyUI's exception text: the job's own code names it.
        ("node_execution_error", "boom", "node_execution_error", "boom"),
        (
            "node_execution_error",
            "two words: x",
            "node_execution_error",
            "two words: x",
        ),
        ("job_timeout", "Timeout: 600 s", "job_timeout", "Timeout: 600 s"),
        ("", "lost", "Error", "lost"),
    ],
)
def test_other_failures_keep_their_whole_message(
    code: str, message: str, kind: str, text: str
) -> None:
    data = shapes.execution_error(failed(code=code, message=message), [])

    assert (data["exception_type"], data["exception_message"]) == (kind, text)
    assert (data["node_id"], data["node_type"], data["traceback"]) == (None, None, [])


def test_history_and_the_socket_send_the_same_failure() -> None:
    job = failed(
        code="node_execution_error",
        message="Exception: **** ERROR: Saving image outside the output folder",
        node_id="9",
        class_type="SaveImage",
        traceback="line 1\nline 2",
    )
    job.started_at.FromSeconds(1_700_000_000)
    job.completed_at.FromSeconds(1_700_000_005)

    kind, history = shapes.history_status(job)["messages"][-1]
    socket = ws_frames.error_payload(job.id, job, [])

    assert kind == socket["type"] == "execution_error"
    assert {name: history[name] for name in SAME_FIELDS} == {
        name: socket["data"][name] for name in SAME_FIELDS
    }
    assert history["prompt_id"] == socket["data"]["prompt_id"] == job.id
    assert history["exception_type"] == "Exception"
