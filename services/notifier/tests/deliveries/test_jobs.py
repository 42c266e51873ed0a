"""The job a payload shows, rendered from the workflow service's reply as the
REST API renders it."""

from __future__ import annotations

from datetime import UTC, datetime

from google.protobuf.timestamp_pb2 import Timestamp

from comfyserve.contracts.pb.storage.v1 import storage_pb2 as st
from comfyserve.contracts.pb.workflow.v1 import workflow_pb2 as wf
from comfyserve.notifier.deliveries.jobs import render_job

EXPIRES = datetime(2026, 1, 1, 0, 5, tzinfo=UTC)


def _stamp(value: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(value)
    return stamp


def _output(file_id: str) -> wf.OutputFile:
    return wf.OutputFile(
        file_id=file_id,
        node_id="9",
        filename=f"{file_id}.png",
        kind=wf.OUTPUT_KIND_IMAGE,
        content_type="image/png",
        size=10,
        width=8,
    )


def test_a_completed_job_with_fresh_urls_and_each_output_once() -> None:
    job = wf.Job(
        id="j1",
        status=wf.JOB_STATUS_COMPLETED,
        priority=wf.PRIORITY_HIGH,
        created_at=_stamp(datetime(2026, 1, 1, tzinfo=UTC)),
        attempt=2,
        outputs=[_output("f1"), _output("f2"), _output("f1")],
        metadata={"k": "v"},
        webhook_url="https://example.com/hook",
        timeout_seconds=90,
        duration_seconds=1.5,
    )
    urls = {
        "f1": st.DownloadUrl(
            file_id="f1", url="https://s3/f1?sig", expires_at=_stamp(EXPIRES)
        )
    }

    shown = render_job(job, urls, "https://api.example.com/")

    assert (shown.status, shown.priority, shown.attempt) == ("completed", "high", 2)
    assert [o.file_id for o in shown.outputs] == ["f1", "f2"]
    assert (shown.outputs[0].url, shown.outputs[0].url_expires_at) == (
        "https://s3/f1?sig",
        EXPIRES,
    )
    # A file retention removed still shows, without a URL.
    assert (shown.outputs[1].url, shown.outputs[1].kind) == (None, "image")
    assert (shown.outputs[0].width, shown.outputs[0].height) == (8, None)
    assert shown.links.self == "https://api.example.com/workflows/j1"
    assert shown.links.cancel == "https://api.example.com/workflows/j1/cancel"
    assert (shown.webhook_url, shown.timeout_minutes) == (
        "https://example.com/hook",
        1.5,
    )
    assert (shown.duration_seconds, shown.started_at, shown.error) == (1.5, None, None)
    assert shown.metadata == {"k": "v"}


def test_an_expired_job_is_failed_with_code_expired() -> None:
    shown = render_job(wf.Job(id="j2", status=wf.JOB_STATUS_EXPIRED), {}, "http://x")

    assert shown.status == "failed"
    assert shown.error is not None
    assert shown.error.code == "expired"
    assert (shown.webhook_url, shown.duration_seconds) == (None, None)


def test_a_failed_job_carries_its_error() -> None:
    job = wf.Job(
        id="j3",
        status=wf.JOB_STATUS_FAILED,
        error=wf.JobError(
            code="node_execution_error", message="boom", node_id="3", class_type="K"
        ),
    )

    shown = render_job(job, {}, "http://x")

    assert shown.error is not None
    assert (shown.error.code, shown.error.node_id, shown.error.class_type) == (
        "node_execution_error",
        "3",
        "K",
    )
