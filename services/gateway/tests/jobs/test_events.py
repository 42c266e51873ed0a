import asyncio

import httpx

from comfyserve.contracts.pb.workflow.v1 import workflow_pb2 as wf
from comfyserve.gateway.server import server_config


def _output(file_id, index):
    return wf.OutputFile(
        file_id=file_id,
        node_id="9",
        index=index,
        filename=f"{index}.png",
        kind=wf.OUTPUT_KIND_IMAGE,
        content_type="image/png",
        size=5,
    )


def _script(job, first, second):
    pending = wf.Job()
    pending.CopyFrom(job)
    pending.queue_position = 1
    running = wf.Job(id=job.id, status=wf.JOB_STATUS_RUNNING, attempt=1)
    progressing = wf.Job()
    progressing.CopyFrom(running)
    progressing.progress.CopyFrom(
        wf.Progress(node_id="3", class_type="KSampler", step=1, max=2, fraction=0.5)
    )
    with_first = wf.Job()
    with_first.CopyFrom(progressing)
    with_first.outputs.append(first)
    completed = wf.Job(id=job.id, status=wf.JOB_STATUS_COMPLETED, attempt=1)
    # The second output is only listed on the final job, never announced.
    completed.outputs.extend([first, second])
    return [
        wf.JobUpdate(job=pending, kind=wf.UPDATE_KIND_STATUS),
        wf.JobUpdate(job=running, kind=wf.UPDATE_KIND_STATUS),
        wf.JobUpdate(job=progressing, kind=wf.UPDATE_KIND_PROGRESS),
        wf.JobUpdate(job=with_first, kind=wf.UPDATE_KIND_OUTPUT, new_outputs=[first]),
        wf.JobUpdate(job=completed, kind=wf.UPDATE_KIND_STATUS),
        # Anything after the final status must not reach the client.
        wf.JobUpdate(job=running, kind=wf.UPDATE_KIND_STATUS),
    ]


async def test_events_stream_outputs_before_the_final_status_and_then_end(
    client, workflow, storage, auth_a, tenant_a, parse_sse
):
    job = workflow.add_job(tenant_a)
    first = storage.add_file(tenant_a, key="outputs/0.png")
    second = storage.add_file(tenant_a, key="outputs/1.png")
    workflow.watch_scripts[job.id] = _script(
        job, _output(first.id, 0), _output(second.id, 1)
    )

    response = await client.get(f"/workflows/{job.id}/events", headers=auth_a)

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    events = parse_sse(response.text)
    assert [name for name, _ in events] == [
        "status",
        "status",
        "progress",
        "output",
        "output",
        "status",
    ]
    assert events[0][1] == {"status": "pending", "queue_position": 1, "error": None}
    assert events[1][1]["status"] == "running"
    assert events[2][1]["progress"]["class_type"] == "KSampler"
    assert events[2][1]["progress"]["fraction"] == 0.5
    assert [data["file_id"] for _, data in events[3:5]] == [first.id, second.id]
    assert events[3][1]["url"] == "http://objects.test/bucket/outputs/0.png?sig=get"
    assert events[4][1]["url"] == "http://objects.test/bucket/outputs/1.png?sig=get"
    assert events[5][1]["status"] == "completed"


async def test_watching_a_finished_job_sends_its_outputs_then_its_status(
    client, workflow, storage, auth_a, tenant_a, parse_sse
):
    stored = storage.add_file(tenant_a, key="outputs/0.png")
    job = workflow.add_job(
        tenant_a, status=wf.JOB_STATUS_COMPLETED, outputs=[_output(stored.id, 0)]
    )

    response = await client.get(f"/workflows/{job.id}/events", headers=auth_a)

    assert [name for name, _ in parse_sse(response.text)] == ["output", "status"]


async def test_an_unknown_job_is_404_before_streaming(client, auth_a):
    response = await client.get(
        "/workflows/00000000-0000-4000-8000-000000000000/events", headers=auth_a
    )

    assert response.status_code == 404
    assert response.headers["content-type"] == "application/json"
    assert response.json()["error"] == "not_found"


async def test_a_quiet_stream_sends_keepalive_comments(
    make_app, settings, workflow, auth_a, tenant_a, uvicorn_server, parse_sse
):
    job = workflow.add_job(tenant_a)
    completed = wf.Job(id=job.id, status=wf.JOB_STATUS_COMPLETED)
    workflow.watch_scripts[job.id] = [
        wf.JobUpdate(job=job, kind=wf.UPDATE_KIND_STATUS),
        wf.JobUpdate(job=completed, kind=wf.UPDATE_KIND_STATUS),
    ]
    # The job stays quiet until the client has seen a keep-alive.
    workflow.watch_gate = asyncio.Event()
    quick = settings.model_copy(update={"sse_keepalive_seconds": 0.05})
    lines = []
    async with (
        uvicorn_server(server_config(make_app(quick), quick)) as port,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http,
        http.stream("GET", f"/workflows/{job.id}/events", headers=auth_a) as response,
    ):
        assert response.status_code == 200
        async for line in response.aiter_lines():
            lines.append(line)
            if line.startswith(": ping"):
                workflow.watch_gate.set()

    events = parse_sse("\n".join(lines))
    assert [data["status"] for _, data in events] == ["pending", "completed"]
    first_ping = next(i for i, line in enumerate(lines) if line.startswith(": ping"))
    last_status = max(i for i, line in enumerate(lines) if line == "event: status")
    assert first_ping < last_status
