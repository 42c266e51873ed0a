from datetime import UTC, datetime, timedelta

import pytest

from comfyserve.contracts.events import (
    DeliveryDead,
    DeliveryDeadData,
    Event,
    FailureCode,
    FinalStatus,
    GpuInfo,
    JobCancelled,
    JobCancelledData,
    JobCancelRequested,
    JobCancelRequestedData,
    JobCompleted,
    JobCompletedData,
    JobFailed,
    JobFailedData,
    JobFinished,
    JobFinishedData,
    JobProgressData,
    JobProgressed,
    JobRejected,
    JobRejectedData,
    JobStarted,
    JobStartedData,
    JobSubmitted,
    JobSubmittedData,
    NodeCatalogData,
    NodeCatalogPublished,
    OutputFile,
    OutputKind,
    Priority,
    RejectionCode,
    SubmitRequested,
    SubmitRequestedData,
    WorkerHeartbeat,
    WorkerHeartbeatData,
)

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)

OUTPUT = OutputFile(
    file_id="f-out",
    node_id="9",
    index=0,
    filename="ComfyUI_00001_.png",
    kind=OutputKind.IMAGE,
    content_type="image/png",
    size=1234,
    sha256="ab" * 32,
    bucket="outputs",
    key="t1/job-1/9/ComfyUI_00001_.png",
    width=512,
    height=512,
)


def make_submitted(priority: Priority = Priority.NORMAL) -> JobSubmitted:
    return JobSubmitted(
        source="workflow/0",
        subject="job-1",
        tenant_id="t1",
        time=NOW,
        data=JobSubmittedData(
            pool="default",
            priority=priority,
            attempt=1,
            timeout_seconds=600,
            deadline=NOW + timedelta(minutes=10),
        ),
    )


def make_all_events() -> list[Event]:
    job = {"source": "executor/w1", "subject": "job-1", "tenant_id": "t1"}
    worker = {"source": "executor/w1", "subject": "w1"}
    return [
        make_submitted(),
        JobFinished(
            source="workflow/0",
            subject="job-1",
            tenant_id="t1",
            data=JobFinishedData(
                status=FinalStatus.COMPLETED,
                attempt=1,
                output_file_ids=["f-out"],
                webhook_url="https://example.com/hook",
            ),
        ),
        JobCancelRequested(
            source="workflow/0",
            subject="job-1",
            tenant_id="t1",
            data=JobCancelRequestedData(reason="user"),
        ),
        SubmitRequested(
            source="team-a/ingest",
            subject="req-1",
            tenant_id="t1",
            data=SubmitRequestedData(
                request_id="req-1",
                workflow={"1": {"class_type": "EmptyImage", "inputs": {}}},
                priority=Priority.HIGH,
                metadata={"batch": "7"},
                timeout_seconds=60,
            ),
        ),
        JobRejected(
            source="workflow/0",
            subject="req-1",
            tenant_id="t1",
            data=JobRejectedData(
                request_id="req-1",
                code=RejectionCode.INVALID_WORKFLOW,
                message="Prompt outputs failed validation",
                error={"type": "prompt_outputs_failed_validation"},
                node_errors={"1": {"errors": [], "class_type": "EmptyImage"}},
            ),
        ),
        JobStarted(**job, data=JobStartedData(attempt=1, worker_id="w1")),
        JobProgressed(
            **job,
            data=JobProgressData(
                attempt=1,
                worker_id="w1",
                node_id="3",
                class_type="KSampler",
                step=5,
                max=20,
                fraction=0.25,
                nodes_done=1,
                nodes_total=4,
                outputs=[OUTPUT],
            ),
        ),
        JobCompleted(
            **job,
            data=JobCompletedData(
                attempt=1, worker_id="w1", outputs=[OUTPUT], duration_ms=1500
            ),
        ),
        JobFailed(
            **job,
            data=JobFailedData(
                attempt=2,
                worker_id="w1",
                code=FailureCode.NODE_EXECUTION_ERROR,
                message="boom",
                node_id="3",
                class_type="KSampler",
                traceback="Traceback ...",
                retryable=False,
            ),
        ),
        JobCancelled(
            **job, data=JobCancelledData(attempt=1, worker_id="w1", reason="user")
        ),
        WorkerHeartbeat(
            **worker,
            data=WorkerHeartbeatData(
                worker_id="w1",
                current_job_id="job-1",
                gpus=[GpuInfo(index=0, name="H100", vram_total=80, vram_free=40)],
                loaded_models=["sd15.safetensors"],
                engine_version="0.3.10",
                interval_s=5.0,
            ),
        ),
        NodeCatalogPublished(
            **worker,
            data=NodeCatalogData(
                worker_id="w1",
                catalog_hash="h",
                object_info={"EmptyImage": {"input": {"required": {}}}},
                models={"checkpoints": ["sd15.safetensors"]},
            ),
        ),
        DeliveryDead(
            source="notifier/0",
            subject="msg_1",
            tenant_id="t1",
            data=DeliveryDeadData(
                delivery_id="msg_1",
                event_type="job.completed",
                job_id="job-1",
                url="https://example.com/hook",
                attempts=8,
                reason="retries exhausted",
            ),
        ),
    ]


@pytest.fixture(params=make_all_events(), ids=lambda event: event.type)
def any_event(request: pytest.FixtureRequest) -> Event:
    event: Event = request.param
    return event
