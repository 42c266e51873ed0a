"""A prompt's run, followed against a hand-written fake ComfyUI that replays
B.5.5 sequences."""

import asyncio
import json
import struct
import time
import uuid
from contextlib import aclosing
from dataclasses import replace

import pytest

from comfyserve.executor.engine.client import ComfyClient
from comfyserve.executor.engine.errors import EngineRestarted, EngineTimeout
from comfyserve.executor.engine.events import (
    ExecutionFailed,
    ExecutionInterrupted,
    ExecutionStarted,
    ExecutionSucceeded,
    NodeExecuted,
    NodeStarted,
    PreviewImage,
    PromptQueued,
    PromptRejected,
)
from comfyserve.executor.engine.prompt_run import run_prompt
from comfyserve.executor.engine.socket import PromptSocket

from .conftest import FAST, IMAGE, FakeComfy, g1_script, msg


async def collect(client: ComfyClient, timeout_s: float = 10.0):
    deadline = time.monotonic() + timeout_s
    socket = PromptSocket(client)
    try:
        run = run_prompt(socket, {"1": {}}, "job-1", deadline)
        async with aclosing(run) as events:
            return [event async for event in events]
    finally:
        await socket.close()


async def test_g1_completion_on_executing_null_uses_the_returned_prompt_id(make_client):
    fake = FakeComfy("g1", g1_script)
    events = await collect(await make_client(fake))
    queued = events[0]
    assert isinstance(queued, PromptQueued)
    assert queued.prompt_id in fake.history
    assert [e.node_id for e in events if isinstance(e, NodeStarted)] == ["1", "3"]
    assert any(isinstance(e, NodeExecuted) for e in events)
    final = events[-1]
    assert isinstance(final, ExecutionSucceeded)
    assert final.prompt_id == queued.prompt_id
    assert [ref.filename for ref in final.outputs] == ["o_00001_.png"]


async def test_g2_success_waits_for_history_written_after_execution_success(
    make_client,
):
    def script(pid):
        return [
            msg("execution_start", prompt_id=pid, timestamp=1),
            msg("execution_success", prompt_id=pid, timestamp=2),
            "HOLD",
        ]

    fake = FakeComfy("g2", script)
    fake.hold.clear()
    client = await make_client(fake)
    events = []
    deadline = time.monotonic() + 10
    socket = PromptSocket(client)
    run = run_prompt(socket, {"1": {}}, "job-1", deadline)
    async with aclosing(run) as events_of_run:
        async for event in events_of_run:
            events.append(event)
            if isinstance(event, ExecutionStarted):
                # History is written only now, after execution_success was sent.
                fake.hold.set()
    await socket.close()
    queued, final = events[0], events[-1]
    assert str(uuid.UUID(queued.prompt_id)) == queued.prompt_id
    assert isinstance(final, ExecutionSucceeded)
    assert final.prompt_id == queued.prompt_id
    assert len(final.outputs) == 1


async def test_dropped_socket_falls_back_to_history(make_client):
    def script(pid):
        return [
            msg("execution_start", prompt_id=pid),
            "DROP",
            msg("executing", node=None, prompt_id=pid),
        ]

    fake = FakeComfy("g1", script)
    events = await collect(await make_client(fake))
    assert isinstance(events[-1], ExecutionSucceeded)
    assert events[-1].outputs_by_node["3"][0].filename == "o_00001_.png"


async def test_error_from_history_when_the_message_was_missed(make_client):
    error = {
        "prompt_id": "x",
        "node_id": "3",
        "node_type": "SaveImage",
        "exception_message": "boom",
        "exception_type": "Exception",
        "traceback": [],
        "executed": [],
    }
    fake = FakeComfy(
        "g1",
        lambda pid: ["DROP"],
        outputs={},
        status={
            "status_str": "error",
            "completed": False,
            "messages": [["execution_error", error]],
        },
    )
    events = await collect(await make_client(fake))
    failed = events[-1]
    assert isinstance(failed, ExecutionFailed)
    assert (failed.node_id, failed.node_type, failed.exception_message) == (
        "3",
        "SaveImage",
        "boom",
    )


async def test_g1_unknown_class_type_is_a_rejection(make_client):
    fake = FakeComfy("g1", g1_script)
    fake.prompt_status = 500
    events = await collect(await make_client(fake))
    assert events == [PromptRejected(status=500, body="500 Internal Server Error")]


async def test_deadline_raises_instead_of_hanging(make_client):
    fake = FakeComfy("g2", lambda pid: ["HOLD"])
    fake.hold.clear()
    with pytest.raises(EngineTimeout):
        await collect(await make_client(fake), timeout_s=0.5)


async def test_interrupted_message_ends_the_run(make_client):
    def script(pid):
        return [
            msg("executing", node="4", prompt_id=pid),
            msg(
                "execution_interrupted",
                prompt_id=pid,
                node_id="4",
                node_type="X",
                executed=[],
            ),
        ]

    events = await collect(await make_client(FakeComfy("g2", script)))
    assert isinstance(events[-1], ExecutionInterrupted)
    assert events[-1].node_id == "4"


async def test_the_partner_key_goes_into_the_prompts_extra_data(make_client):
    fake = FakeComfy("g2", g1_script)
    client = await make_client(fake)
    deadline = time.monotonic() + 10
    socket = PromptSocket(client)
    run = run_prompt(socket, {"1": {}}, "job-1", deadline, partner_key="pk-secret")
    async with aclosing(run) as events:
        assert isinstance([e async for e in events][-1], ExecutionSucceeded)
    await socket.close()

    [body] = fake.bodies
    assert body["extra_data"] == {"api_key_comfy_org": "pk-secret"}


async def test_a_prompt_without_a_partner_key_sends_no_extra_data(make_client):
    fake = FakeComfy("g2", g1_script)
    await collect(await make_client(fake))

    [body] = fake.bodies
    assert "extra_data" not in body


def binary(kind: int, word: int, body: bytes) -> bytes:
    return struct.pack(">II", kind, word) + body


async def test_binary_preview_frames_become_previews_of_the_prompt(make_client):
    def script(pid):
        metadata = json.dumps(
            {"node_id": "3", "prompt_id": pid, "image_type": "image/png"}
        )
        other = json.dumps(
            {"node_id": "3", "prompt_id": "someone-else", "image_type": "image/png"}
        )
        return [
            msg("execution_start", prompt_id=pid),
            msg("executing", node="3", prompt_id=pid),
            binary(1, 1, b"\xff\xd8jpeg-bytes"),
            binary(4, len(metadata), metadata.encode() + b"\x89PNG-bytes"),
            binary(4, len(other), other.encode() + b"\x89PNG-not-ours"),
            binary(3, 1, b"3text"),
            msg("executed", node="3", output={"images": [IMAGE]}, prompt_id=pid),
        ]

    events = await collect(await make_client(FakeComfy("g1", script)))

    previews = [e for e in events if isinstance(e, PreviewImage)]
    assert [(p.content_type, p.data, p.node_id) for p in previews] == [
        ("image/jpeg", b"\xff\xd8jpeg-bytes", None),
        ("image/png", b"\x89PNG-bytes", "3"),
    ]
    assert isinstance(events[-1], ExecutionSucceeded)


async def follow_both(socket: PromptSocket) -> tuple[list, list]:
    deadline = time.monotonic() + 10

    async def one(job_id: str) -> list:
        run = run_prompt(socket, {"1": {}}, job_id, deadline)
        async with aclosing(run) as events:
            return [event async for event in events]

    first, second = await asyncio.gather(one("job-a"), one("job-b"))
    await socket.close()
    return first, second


def preview_script(pid):
    # The preview names no prompt: it is the executing prompt's.
    return [
        msg("execution_start", prompt_id=pid),
        msg("executing", node="3", prompt_id=pid),
        binary(1, 1, b"\xff\xd8" + pid.encode()),
        msg("executed", node="3", output={"images": [IMAGE]}, prompt_id=pid),
    ]


@pytest.mark.parametrize("generation", ["g1", "g2"])
async def test_two_prompts_on_one_socket_each_get_their_own_frames(
    make_client, generation
):
    fake = FakeComfy(generation, preview_script)
    first, second = await follow_both(PromptSocket(await make_client(fake)))

    assert len(fake.connections) == 1
    assert len({body["client_id"] for body in fake.bodies}) == 1
    for events in (first, second):
        prompt_id = events[0].prompt_id
        assert {e.prompt_id for e in events if hasattr(e, "prompt_id")} == {prompt_id}
        assert [e.data for e in events if isinstance(e, PreviewImage)] == [
            b"\xff\xd8" + prompt_id.encode()
        ]
        assert [e.node_id for e in events if isinstance(e, NodeStarted)] == ["3"]
        assert isinstance(events[-1], ExecutionSucceeded)
    assert first[0].prompt_id != second[0].prompt_id


async def test_a_dropped_socket_reconnects_and_both_prompts_in_flight_end(
    make_client,
):
    def script(pid):
        if pid != fake.bodies[0]["prompt_id"]:
            return preview_script(pid)
        # The first prompt loses the socket mid-run while the second waits in
        # ComfyUI's queue; it goes on only once its frame over the new socket
        # was seen.
        return [
            msg("execution_start", prompt_id=pid),
            "DROP",
            "RECONNECTED",
            msg("executing", node="3", prompt_id=pid),
            "HOLD",
            msg("executed", node="3", output={"images": [IMAGE]}, prompt_id=pid),
        ]

    fake = FakeComfy("g2", script)
    fake.hold.clear()
    socket = PromptSocket(await make_client(fake))
    deadline = time.monotonic() + 10

    async def one(job_id: str) -> list:
        events = []
        async with aclosing(run_prompt(socket, {"1": {}}, job_id, deadline)) as run:
            async for event in run:
                events.append(event)
                if isinstance(event, NodeStarted):
                    fake.hold.set()
        return events

    running = asyncio.create_task(one("job-a"))
    await fake.queued.wait()
    second = await one("job-b")
    first = await running
    await socket.close()

    assert len(fake.connections) == 2
    assert len(set(fake.connections)) == 1
    assert first[0].prompt_id == fake.bodies[0]["prompt_id"]
    assert second[0].prompt_id == fake.bodies[1]["prompt_id"]
    for events in (first, second):
        prompt_id = events[0].prompt_id
        assert {e.prompt_id for e in events if hasattr(e, "prompt_id")} == {prompt_id}
        assert isinstance(events[-1], ExecutionSucceeded)
    assert [e.node_id for e in first if isinstance(e, NodeStarted)] == ["3"]


async def test_a_prompt_dequeued_behind_another_ends_at_once_as_interrupted(
    make_client,
):
    def script(pid):
        return [msg("execution_start", prompt_id=pid), "HOLD"]

    fake = FakeComfy("g2", script)
    fake.hold.clear()
    # No silence probe within the deadline: only being told ends the run.
    client = await make_client(fake, replace(FAST, silence_probe_s=60.0))
    socket = PromptSocket(client)
    deadline = time.monotonic() + 10

    async def one(job_id: str) -> list:
        async with aclosing(run_prompt(socket, {"1": {}}, job_id, deadline)) as run:
            return [event async for event in run]

    ahead = asyncio.create_task(one("job-a"))
    await fake.queued.wait()
    behind = aclosing(run_prompt(socket, {"1": {}}, "job-b", deadline))
    async with behind as run:
        queued = await anext(run)
        assert queued.prompt_id in fake.pending
        await client.delete_pending(queued.prompt_id)
        socket.dequeued(queued.prompt_id)
        rest = [event async for event in run]
    assert rest == [ExecutionInterrupted(queued.prompt_id, None)]

    fake.hold.set()
    assert isinstance((await ahead)[-1], ExecutionSucceeded)
    await socket.close()


async def test_a_socket_closed_under_a_prompt_ends_it_as_restarted(make_client):
    fake = FakeComfy("g2", lambda pid: [msg("execution_start", prompt_id=pid), "HOLD"])
    fake.hold.clear()
    socket = PromptSocket(await make_client(fake))
    deadline = time.monotonic() + 10
    async with aclosing(run_prompt(socket, {"1": {}}, "job-1", deadline)) as run:
        assert isinstance(await anext(run), PromptQueued)
        assert isinstance(await anext(run), ExecutionStarted)
        # What a restart of the engine does to its socket.
        await socket.close()
        with pytest.raises(EngineRestarted):
            await anext(run)
