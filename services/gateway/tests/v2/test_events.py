"""The v2 SSE stream over scripted watches: the frame order of API.md §A.6,
Last-Event-ID resume, the per-process stream cap and keep-alive comments."""

import asyncio

import httpx

from comfyserve.contracts.pb.workflow.v1 import workflow_pb2 as wf
from comfyserve.gateway.server import server_config
from comfyserve.gateway.settings import Settings

from .test_jobs import OUTPUT_KEYS, UNKNOWN_JOB, assert_envelope, output_file


def _copy(job: wf.Job, **fields: object) -> wf.Job:
    copied = wf.Job()
    copied.CopyFrom(job)
    for name, value in fields.items():
        setattr(copied, name, value)
    return copied


def _script(job: wf.Job, first: wf.OutputFile, second: wf.OutputFile):
    queued = _copy(job, queue_position=2)
    running = _copy(job, status=wf.JOB_STATUS_RUNNING)
    running.ClearField("queue_position")
    progressing = _copy(running)
    progressing.progress.CopyFrom(
        wf.Progress(node_id="3", class_type="KSampler", step=1, max=2, fraction=0.5)
    )
    with_first = _copy(progressing)
    with_first.outputs.append(first)
    completed = _copy(running, status=wf.JOB_STATUS_COMPLETED)
    # The second output is only listed on the final job, never announced.
    completed.outputs.extend([first, second])
    return [
        wf.JobUpdate(job=queued, kind=wf.UPDATE_KIND_STATUS),
        wf.JobUpdate(job=running, kind=wf.UPDATE_KIND_STATUS),
        wf.JobUpdate(job=progressing, kind=wf.UPDATE_KIND_PROGRESS),
        wf.JobUpdate(job=with_first, kind=wf.UPDATE_KIND_OUTPUT, new_outputs=[first]),
        wf.JobUpdate(job=completed, kind=wf.UPDATE_KIND_STATUS),
        # Anything after the terminal status must not reach the client.
        wf.JobUpdate(job=running, kind=wf.UPDATE_KIND_STATUS),
    ]


def _frames(text: str) -> list[list[str]]:
    """The lines of each frame, comments included."""
    blocks = text.replace("\r\n", "\n").split("\n\n")
    return [block.split("\n") for block in blocks if block.strip()]


async def test_outputs_precede_the_terminal_status_and_the_stream_then_ends(
    client, workflow, auth_a, tenant_a, parse_sse
) -> None:
    job = workflow.add_job(tenant_a)
    workflow.watch_scripts[job.id] = _script(
        job, output_file("f-1", 0), output_file("f-2", 1)
    )

    response = await client.get(f"/api/v2/jobs/{job.id}/events", headers=auth_a)

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["cache-control"] == "no-cache"
    assert response.headers["x-accel-buffering"] == "no"
    events = parse_sse(response.text)
    assert [name for name, _ in events] == [
        "status",
        "status",
        "progress",
        "output",
        "output",
        "status",
    ]
    assert events[0][1] == {"status": "queued", "queue_position": 2}
    assert events[1][1] == {"status": "running", "queue_position": None}
    assert events[2][1]["message"] == "KSampler 1/2"
    assert [data["id"] for _, data in events[3:5]] == ["f-1", "f-2"]
    assert all(OUTPUT_KEYS <= data.keys() for _, data in events[3:5])
    assert events[3][1]["url"] == "http://testserver/api/v2/assets/f-1/content"
    assert events[5][1] == {"status": "succeeded", "queue_position": None}
    # Only outputs carry an id, so Last-Event-ID always names an output.
    ids = [line for frame in _frames(response.text) for line in frame if "id:" in line]
    assert ids == ["id: f-1", "id: f-2"]


async def test_a_running_job_opens_with_its_status_then_its_latest_progress(
    client, workflow, auth_a, tenant_a, parse_sse
) -> None:
    job = workflow.add_job(tenant_a, status=wf.JOB_STATUS_RUNNING)
    job.progress.CopyFrom(wf.Progress(fraction=0.25, nodes_done=1, nodes_total=4))
    done = _copy(job, status=wf.JOB_STATUS_COMPLETED)
    workflow.watch_scripts[job.id] = [
        wf.JobUpdate(job=job, kind=wf.UPDATE_KIND_STATUS),
        wf.JobUpdate(job=done, kind=wf.UPDATE_KIND_STATUS),
    ]

    response = await client.get(f"/api/v2/jobs/{job.id}/events", headers=auth_a)

    events = parse_sse(response.text)
    assert [name for name, _ in events] == ["status", "progress", "status"]
    assert events[1][1]["value"] == 0.25
    assert events[1][1]["nodes_total"] == 4


async def test_a_finished_job_sends_its_outputs_then_its_status(
    client, workflow, auth_a, tenant_a, parse_sse
) -> None:
    job = workflow.add_job(
        tenant_a,
        status=wf.JOB_STATUS_COMPLETED,
        outputs=[output_file("f-1", 0), output_file("f-2", 1)],
    )

    response = await client.get(f"/api/v2/jobs/{job.id}/events", headers=auth_a)

    events = parse_sse(response.text)
    assert [name for name, _ in events] == ["output", "output", "status"]
    assert events[-1][1]["status"] == "succeeded"


async def test_last_event_id_resumes_after_the_output_it_names(
    client, workflow, auth_a, tenant_a, parse_sse
) -> None:
    outputs = [output_file(f"f-{index}", index) for index in range(3)]
    job = workflow.add_job(tenant_a, status=wf.JOB_STATUS_COMPLETED, outputs=outputs)
    url = f"/api/v2/jobs/{job.id}/events"

    resumed = await client.get(url, headers={**auth_a, "Last-Event-ID": "f-1"})
    unknown = await client.get(url, headers={**auth_a, "Last-Event-ID": "other"})

    assert [
        (name, data.get("id") or data["status"])
        for name, data in parse_sse(resumed.text)
    ] == [("output", "f-2"), ("status", "succeeded")]
    # An id the job has no output of is a fresh stream, not a lost one.
    assert [data.get("id") for _, data in parse_sse(unknown.text)] == [
        "f-0",
        "f-1",
        "f-2",
        None,
    ]


async def test_an_unknown_job_is_404_in_the_envelope_and_frees_its_slot(
    make_app, settings, serve_app, workflow, auth_a, tenant_a, parse_sse
) -> None:
    job = workflow.add_job(tenant_a, status=wf.JOB_STATUS_COMPLETED)
    one = settings.model_copy(update={"v2_max_streams": 1})

    async with serve_app(make_app(one)) as client:
        missing = await client.get(f"/api/v2/jobs/{UNKNOWN_JOB}/events", headers=auth_a)
        # The cap is one: this stream opens only if the refusal gave it back.
        found = await client.get(f"/api/v2/jobs/{job.id}/events", headers=auth_a)
        again = await client.get(f"/api/v2/jobs/{job.id}/events", headers=auth_a)

    assert_envelope(missing, 404, "not_found")
    assert missing.headers["content-type"] == "application/json"
    assert found.status_code == again.status_code == 200
    assert parse_sse(again.text) == [
        ("status", {"status": "succeeded", "queue_position": None})
    ]


async def test_streams_over_the_cap_are_429_and_an_ended_one_frees_its_slot(
    make_app, settings, workflow, auth_a, tenant_a, uvicorn_server
) -> None:
    held = workflow.add_job(tenant_a)
    done = _copy(held, status=wf.JOB_STATUS_COMPLETED)
    workflow.watch_scripts[held.id] = [
        wf.JobUpdate(job=held, kind=wf.UPDATE_KIND_STATUS),
        wf.JobUpdate(job=done, kind=wf.UPDATE_KIND_STATUS),
    ]
    # Each watch stays open after its first frame until the gate opens.
    workflow.watch_gate = asyncio.Event()
    two = settings.model_copy(update={"v2_max_streams": 2})
    url = f"/api/v2/jobs/{held.id}/events"

    async with (
        uvicorn_server(server_config(make_app(two), two)) as port,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http,
        http.stream("GET", url, headers=auth_a) as first,
        http.stream("GET", url, headers=auth_a) as second,
    ):
        # Both streams are open once their first frames arrived.
        first_lines, second_lines = first.aiter_lines(), second.aiter_lines()
        await anext(first_lines)
        await anext(second_lines)
        refused = await http.get(url, headers=auth_a)
        workflow.watch_gate.set()
        rest = [line async for line in first_lines]
        rest += [line async for line in second_lines]
        # The slots came back when the streams ended.
        reopened = await http.get(url, headers=auth_a)

    error = assert_envelope(refused, 429, "too_many_streams")
    assert "poll" in error["message"]
    assert refused.headers["Retry-After"] == "5"
    assert rest.count("event: status") == 2
    assert reopened.status_code == 200


async def test_a_client_that_goes_away_frees_its_slot(
    make_app, settings, workflow, auth_a, tenant_a, uvicorn_server
) -> None:
    job = workflow.add_job(tenant_a)
    workflow.watch_scripts[job.id] = [
        wf.JobUpdate(job=job, kind=wf.UPDATE_KIND_STATUS),
        wf.JobUpdate(job=job, kind=wf.UPDATE_KIND_STATUS),
    ]
    # The job never moves on: only the client's leaving ends the stream.
    workflow.watch_gate = asyncio.Event()
    app = make_app(settings)
    slots = app.state.v2_streams

    async with (
        uvicorn_server(server_config(app, settings)) as port,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http,
    ):
        async with http.stream(
            "GET", f"/api/v2/jobs/{job.id}/events", headers=auth_a
        ) as response:
            await anext(response.aiter_lines())
            assert slots.open == 1
        # The server notices the disconnect on its own time: a deadline.
        async with asyncio.timeout(5):
            while True:
                if slots.open == 0:
                    return
                await asyncio.sleep(0.01)


async def test_a_client_gone_before_the_first_frame_gives_its_slot_back(
    app, workflow, auth_a, tenant_a
) -> None:
    job = workflow.add_job(tenant_a)
    headers = [(b"host", b"testserver")]
    headers += [
        (name.lower().encode(), value.encode()) for name, value in auth_a.items()
    ]
    path = f"/api/v2/jobs/{job.id}/events"
    sent: list[dict] = []

    async def gone() -> dict:
        return {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        sent.append(message)
        # A real server's write yields, so the disconnect is seen meanwhile.
        await asyncio.sleep(0)

    async with app.router.lifespan_context(app) as state:
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "root_path": "",
            "query_string": b"",
            "headers": headers,
            "client": ("127.0.0.1", 50000),
            "server": ("testserver", 80),
            "state": dict(state or {}),
        }
        await app(scope, gone, send)

    assert sent[0]["status"] == 200
    assert not any(message.get("body") for message in sent)
    assert app.state.v2_streams.open == 0


async def test_a_quiet_stream_sends_keepalive_comments(
    make_app, settings, workflow, auth_a, tenant_a, uvicorn_server, parse_sse
) -> None:
    job = workflow.add_job(tenant_a)
    done = _copy(job, status=wf.JOB_STATUS_COMPLETED)
    workflow.watch_scripts[job.id] = [
        wf.JobUpdate(job=job, kind=wf.UPDATE_KIND_STATUS),
        wf.JobUpdate(job=done, kind=wf.UPDATE_KIND_STATUS),
    ]
    # The job stays quiet until the client has seen a keep-alive.
    workflow.watch_gate = asyncio.Event()
    quick = settings.model_copy(update={"sse_keepalive_seconds": 0.05})
    lines = []
    async with (
        uvicorn_server(server_config(make_app(quick), quick)) as port,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http,
        http.stream("GET", f"/api/v2/jobs/{job.id}/events", headers=auth_a) as response,
    ):
        async for line in response.aiter_lines():
            lines.append(line)
            if line == ": keepalive":
                workflow.watch_gate.set()

    events = parse_sse("\n".join(lines))
    assert [data["status"] for _, data in events] == ["queued", "succeeded"]
    first_ping = lines.index(": keepalive")
    assert lines.index("event: status") < first_ping
    assert first_ping < max(
        i for i, line in enumerate(lines) if line == "event: status"
    )


def test_the_default_keepalive_is_well_inside_the_sdks_idle_timeout() -> None:
    # Both SDKs abort a stream after 45 s of silence (§A.6): at most every 15 s.
    assert Settings.model_fields["sse_keepalive_seconds"].default <= 15
