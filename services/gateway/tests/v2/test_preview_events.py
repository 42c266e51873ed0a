"""The v2 SSE `preview` frame (API.md §A.6): each new preview a worker stored
for a running job, fetched from storage, once per preview file."""

import base64

from comfyserve.contracts.pb.workflow.v1 import workflow_pb2 as wf

JPEG = b"\xff\xd8\xff\xe0preview-bytes"


def _running(job: wf.Job, step: int, preview_file_id: str = "") -> wf.Job:
    running = wf.Job()
    running.CopyFrom(job)
    running.status = wf.JOB_STATUS_RUNNING
    running.ClearField("queue_position")
    running.progress.CopyFrom(
        wf.Progress(
            node_id="3", step=step, max=4, fraction=0.2, preview_file_id=preview_file_id
        )
    )
    return running


async def test_each_new_preview_is_one_frame_after_its_progress(
    client, workflow, storage, object_store, auth_a, tenant_a, parse_sse
) -> None:
    job = workflow.add_job(tenant_a)
    stored = storage.add_file(tenant_a, key="previews/p.jpg", content_type="image/jpeg")
    object_store.objects["/bucket/previews/p.jpg"] = JPEG
    gone = "00000000-0000-4000-8000-00000000dead"
    finished = wf.Job()
    finished.CopyFrom(job)
    finished.status = wf.JOB_STATUS_COMPLETED
    workflow.watch_scripts[job.id] = [
        wf.JobUpdate(job=_running(job, 1, stored.id), kind=wf.UPDATE_KIND_PROGRESS),
        # The same preview again is not sent again.
        wf.JobUpdate(job=_running(job, 2, stored.id), kind=wf.UPDATE_KIND_PROGRESS),
        # One storage no longer has is skipped, and the stream goes on.
        wf.JobUpdate(job=_running(job, 3, gone), kind=wf.UPDATE_KIND_PROGRESS),
        wf.JobUpdate(job=finished, kind=wf.UPDATE_KIND_STATUS),
    ]

    response = await client.get(f"/api/v2/jobs/{job.id}/events", headers=auth_a)

    events = parse_sse(response.text)
    assert [name for name, _ in events] == [
        "status",
        "progress",
        "preview",
        "progress",
        "progress",
        "status",
    ]
    assert events[2][1] == {
        "node_id": "3",
        "content_type": "image/jpeg",
        "data_base64": base64.b64encode(JPEG).decode(),
    }
