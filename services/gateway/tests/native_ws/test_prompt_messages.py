"""A prompt's messages reach the socket of its client id, in ComfyUI's order;
other sockets of the tenant see only `status`, other tenants nothing."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import pytest
import websockets
from google.protobuf.timestamp_pb2 import Timestamp
from websockets.asyncio.client import ClientConnection

from comfyserve.contracts.pb.workflow.v1 import workflow_pb2 as wf
from comfyserve.gateway.server import server_config

Connect = Callable[[str, str], AbstractAsyncContextManager[ClientConnection]]
_BARRIER = {"type": "feature_flags", "data": {}}


@pytest.fixture
async def connect(make_app, settings, uvicorn_server) -> AsyncIterator[Connect]:
    keys = [key.get_secret_value() for key in settings.api_keys]
    async with uvicorn_server(server_config(make_app(settings), settings)) as port:

        @asynccontextmanager
        async def opened(client_id: str, key: str) -> AsyncIterator[ClientConnection]:
            url = f"ws://127.0.0.1:{port}/ws?clientId={client_id}&token={key}"
            async with websockets.connect(url) as socket:
                await socket.recv()  # the hello
                yield socket

        yield lambda client_id, tenant: opened(client_id, keys["ab".index(tenant)])


async def receive(socket: ClientConnection) -> dict[str, Any]:
    return json.loads(await asyncio.wait_for(socket.recv(), 10))


def _is_end(message: dict[str, Any]) -> bool:
    return message["type"] == "executing" and message["data"].get("node", "") is None


async def until_null(socket: ClientConnection) -> list[dict[str, Any]]:
    """Messages up to the prompt's end, `executing{node: null}`."""
    seen = [await receive(socket)]
    while not _is_end(seen[-1]):
        seen.append(await receive(socket))
    return seen


async def rest(socket: ClientConnection) -> list[dict[str, Any]]:
    """What the socket got before its answer to a handshake sent now."""
    await socket.send(json.dumps(_BARRIER))
    seen = [await receive(socket)]
    while seen[-1]["type"] != "feature_flags":
        seen.append(await receive(socket))
    return seen[:-1]


def _update(job: wf.Job, kind: int, **changes: Any) -> wf.JobUpdate:
    now = wf.Job()
    now.CopyFrom(job)
    for name, value in changes.items():
        if isinstance(value, wf.Progress | wf.JobError):
            getattr(now, name).CopyFrom(value)
        else:
            setattr(now, name, value)
    job.CopyFrom(now)
    return wf.JobUpdate(job=now, kind=kind)


def script(job: wf.Job, ending: int, **final: Any) -> list[wf.JobUpdate]:
    output = wf.OutputFile(file_id="f1", node_id="3", filename="obs_00001_.png", kind=1)
    started = Timestamp(seconds=1_900_000_000)
    status, progress, out = (
        wf.UPDATE_KIND_STATUS,
        wf.UPDATE_KIND_PROGRESS,
        wf.UPDATE_KIND_OUTPUT,
    )
    updates = [
        _update(job, status),
        _update(job, status, status=wf.JOB_STATUS_RUNNING, attempt=1),
        _update(job, progress, progress=wf.Progress(node_id="1", class_type="A")),
        _update(
            job,
            progress,
            progress=wf.Progress(node_id="2", class_type="B", step=0, max=1),
        ),
    ]
    updates[1].job.started_at.CopyFrom(started)
    if ending == wf.JOB_STATUS_COMPLETED:
        # As the service sends it: the new output on the job already, too.
        job.outputs.append(output)
        updates.append(wf.JobUpdate(job=job, kind=out, new_outputs=[output]))
    updates.append(_update(job, status, status=ending, **final))
    return updates


@pytest.fixture
def queue(workflow, prompt_router, tenant_a) -> Callable[..., Any]:
    async def queued(ending: int, **final: Any) -> str:
        job = wf.Job(
            id=str(uuid.uuid4()),
            tenant_id=tenant_a,
            status=wf.JOB_STATUS_PENDING,
            client_id="C",
        )
        workflow.jobs[job.id] = job
        workflow.watch_scripts[job.id] = script(wf.Job(id=job.id), ending, **final)
        await prompt_router.announce(tenant_a, "C", job.id)
        return job.id

    return queued


def kinds(messages: list[dict[str, Any]]) -> list[str]:
    return [
        message["type"]
        + (f":{message['data']['node']}" if message["type"] == "executing" else "")
        for message in messages
        if message["type"] != "progress_state"
    ]


async def test_a_normal_run_in_comfyui_order_and_only_status_elsewhere(
    connect, queue
) -> None:
    async with (
        connect("C", "a") as own,
        connect("D", "a") as observer,
        connect("C", "b") as other_tenant,
    ):
        prompt = await queue(wf.JOB_STATUS_COMPLETED)
        seen = await until_null(own)
        observed = await rest(observer)
        foreign = await rest(other_tenant)

    assert kinds(seen) == [
        "status",
        "status",
        "execution_start",
        "execution_cached",
        "executing:1",
        "executing:2",
        "progress",
        "executing:3",
        "executed",
        "execution_success",
        "status",
        "executing:None",
    ]
    executed = next(m for m in seen if m["type"] == "executed")["data"]
    assert executed["output"] == {
        "images": [
            {"filename": "obs_00001_.png", "subfolder": prompt, "type": "output"}
        ]
    }
    assert seen[-1]["data"] == {"node": None, "prompt_id": prompt}
    progress = next(m for m in seen if m["type"] == "progress")["data"]
    assert progress == {"value": 0, "max": 1, "prompt_id": prompt, "node": "2"}
    assert [m["type"] for m in observed] == ["status"] * 3
    assert foreign == []


async def test_a_failed_run_ends_with_the_full_error(connect, queue) -> None:
    error = wf.JobError(
        code="node_execution_error",
        message="Exception: **** ERROR: Saving image outside the output folder",
        node_id="3",
        class_type="SaveImage",
        traceback='  File "nodes.py", line 1\n  raise Exception\n',
    )
    async with connect("C", "a") as own:
        prompt = await queue(wf.JOB_STATUS_FAILED, error=error)
        seen = await until_null(own)

    assert kinds(seen)[-3:] == ["execution_error", "status", "executing:None"]
    failure = next(m for m in seen if m["type"] == "execution_error")["data"]
    failure.pop("timestamp")
    assert failure == {
        "prompt_id": prompt,
        "node_id": "3",
        "node_type": "SaveImage",
        "executed": ["1", "2"],
        "exception_message": "**** ERROR: Saving image outside the output folder",
        "exception_type": "Exception",
        "traceback": ['  File "nodes.py", line 1\n', "  raise Exception\n"],
        "current_inputs": {},
        "current_outputs": [],
    }


async def test_a_cancelled_run_is_interrupted_at_its_node(connect, queue) -> None:
    async with connect("C", "a") as own:
        prompt = await queue(wf.JOB_STATUS_CANCELLED)
        seen = await until_null(own)

    assert kinds(seen)[-3:] == ["execution_interrupted", "status", "executing:None"]
    interrupted = next(m for m in seen if m["type"] == "execution_interrupted")
    assert interrupted["data"]["node_id"] == "2"
    assert interrupted["data"]["node_type"] == "B"
    assert interrupted["data"]["executed"] == ["1"]
    assert interrupted["data"]["prompt_id"] == prompt


PNG = b"\x89PNG\r\n\x1a\n" + b"preview"


@pytest.fixture
def previewed(workflow, storage, object_store, prompt_router, tenant_a):
    """Queues a prompt whose progress names a stored preview image."""

    async def queued() -> str:
        preview = storage.add_file(tenant_a, key="previews/p.png")
        object_store.objects["/bucket/previews/p.png"] = PNG
        job = wf.Job(
            id=str(uuid.uuid4()), tenant_id=tenant_a, status=wf.JOB_STATUS_PENDING
        )
        workflow.jobs[job.id] = job
        running = wf.Job(id=job.id, status=wf.JOB_STATUS_RUNNING, attempt=1)
        running.progress.CopyFrom(
            wf.Progress(node_id="2", step=1, max=4, preview_file_id=preview.id)
        )
        workflow.watch_scripts[job.id] = [
            wf.JobUpdate(job=running, kind=wf.UPDATE_KIND_PROGRESS),
            wf.JobUpdate(
                job=wf.Job(id=job.id, status=wf.JOB_STATUS_COMPLETED, attempt=1),
                kind=wf.UPDATE_KIND_STATUS,
            ),
        ]
        await prompt_router.announce(tenant_a, "C", job.id)
        return job.id

    return queued


async def first_binary(socket: ClientConnection) -> bytes:
    while True:
        frame = await asyncio.wait_for(socket.recv(), 10)
        if isinstance(frame, bytes):
            return frame


async def test_a_preview_is_a_binary_png_frame(connect, previewed) -> None:
    async with connect("C", "a") as own:
        await previewed()
        frame = await first_binary(own)

    assert frame == b"\x00\x00\x00\x01\x00\x00\x00\x02" + PNG


async def test_a_client_that_asked_gets_previews_with_metadata(
    connect, previewed
) -> None:
    async with connect("C", "a") as own:
        await own.send(
            json.dumps(
                {"type": "feature_flags", "data": {"supports_preview_metadata": True}}
            )
        )
        assert (await receive(own))["type"] == "feature_flags"
        prompt = await previewed()
        frame = await first_binary(own)

    assert frame[:4] == b"\x00\x00\x00\x04"
    length = int.from_bytes(frame[4:8], "big")
    metadata = json.loads(frame[8 : 8 + length])
    assert metadata["node_id"] == "2"
    assert metadata["prompt_id"] == prompt
    assert frame[8 + length :] == PNG


async def test_a_reconnecting_client_takes_over_its_running_prompt(
    connect, workflow, tenant_a
) -> None:
    running = wf.Job(
        id=str(uuid.uuid4()),
        tenant_id=tenant_a,
        status=wf.JOB_STATUS_RUNNING,
        attempt=1,
        client_id="C",
    )
    running.progress.CopyFrom(wf.Progress(node_id="2"))
    workflow.jobs[running.id] = running
    ended = wf.Job(id=running.id, status=wf.JOB_STATUS_COMPLETED, attempt=1)
    workflow.watch_scripts[running.id] = [
        wf.JobUpdate(job=running, kind=wf.UPDATE_KIND_STATUS),
        wf.JobUpdate(job=ended, kind=wf.UPDATE_KIND_STATUS),
    ]

    async with connect("C", "a") as own:
        seen = await until_null(own)

    assert seen[0] == {"type": "executing", "data": {"node": "2"}}
    assert kinds(seen)[1:] == ["execution_success", "status", "executing:None"]
