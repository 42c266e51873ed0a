"""A real ComfyUI started by ManagedComfyUI (model-free nodes on the CPU)."""

import asyncio
import io
import os
import signal
import time
import uuid
from contextlib import aclosing
from pathlib import Path

import pytest
from PIL import Image

from comfyserve.executor.engine import (
    CancelOutcome,
    EngineCrashed,
    ExecutionFailed,
    ExecutionInterrupted,
    ExecutionSucceeded,
    JobFiles,
    ManagedComfyUI,
    NodeCached,
    NodeStarted,
    PromptQueued,
    PromptRejected,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

RUN_BUDGET_S = 120.0


@pytest.fixture(scope="module")
async def engine(stack, tmp_path_factory):
    managed = ManagedComfyUI(
        Path(stack["COMFYUI_PATH"]),
        Path(stack["COMFYUI_PYTHON"]),
        tmp_path_factory.mktemp("comfy"),
        cpu=True,
    )
    await managed.start()
    yield managed
    pid = managed.pid
    await managed.stop()
    assert managed.pid is None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


async def run_to_end(engine, prompt):
    deadline = time.monotonic() + RUN_BUDGET_S
    async with aclosing(engine.run(prompt, f"job-{uuid.uuid4()}", deadline)) as events:
        return [event async for event in events]


def invert_prompt(prefix: str, source: dict) -> dict:
    return {
        "1": source,
        "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
        "3": {
            "class_type": "SaveImage",
            "inputs": {"images": ["2", 0], "filename_prefix": prefix},
        },
    }


def red_image(size: int = 64) -> dict:
    return {
        "class_type": "EmptyImage",
        "inputs": {"width": size, "height": size, "batch_size": 1, "color": 0xFF0000},
    }


def slow_prompt(blurs: int = 8) -> dict:
    prompt: dict = {
        "1": {
            "class_type": "EmptyImage",
            "inputs": {"width": 512, "height": 512, "batch_size": 8, "color": 255},
        }
    }
    for index in range(2, blurs + 2):
        prompt[str(index)] = {
            "class_type": "ImageBlur",
            "inputs": {"image": [str(index - 1), 0], "blur_radius": 31, "sigma": 10.0},
        }
    prompt[str(blurs + 2)] = {
        "class_type": "PreviewImage",
        "inputs": {"images": [str(blurs + 1), 0]},
    }
    return prompt


async def pixel_of(engine, ref) -> tuple:
    data = await engine.fetch_output(ref)
    with Image.open(io.BytesIO(data)) as image:
        return image.convert("RGB").getpixel((0, 0))


async def test_invert_then_cached_rerun_reads_outputs_from_history(engine):
    prompt = invert_prompt(f"inv-{uuid.uuid4().hex[:8]}", red_image())
    first = await run_to_end(engine, prompt)
    assert isinstance(first[0], PromptQueued)
    done = first[-1]
    assert isinstance(done, ExecutionSucceeded)
    assert done.prompt_id == first[0].prompt_id
    [ref] = done.outputs
    assert (ref.node_id, ref.kind, ref.content_type) == ("3", "image", "image/png")
    assert await pixel_of(engine, ref) == (0, 255, 255)

    again = await run_to_end(engine, prompt)
    cached = next(e for e in again if isinstance(e, NodeCached))
    assert set(cached.node_ids) == {"1", "2", "3"}
    rerun = again[-1]
    assert isinstance(rerun, ExecutionSucceeded)
    assert rerun.outputs == done.outputs

    await engine.cleanup(JobFiles(outputs=done.outputs))
    assert not (engine.dirs.output / ref.subfolder / ref.filename).exists()


async def test_uploaded_image_feeds_load_image(engine):
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (10, 20, 30)).save(buffer, format="PNG")
    subfolder = f"job-{uuid.uuid4().hex[:8]}"
    name = await engine.upload_input(buffer.getvalue(), "in.png", subfolder)
    assert name == f"{subfolder}/in.png"
    # overwrite=true keeps the name instead of storing "in (1).png".
    assert await engine.upload_input(buffer.getvalue(), "in.png", subfolder) == name

    prompt = invert_prompt(
        f"load-{uuid.uuid4().hex[:8]}",
        {"class_type": "LoadImage", "inputs": {"image": name}},
    )
    done = (await run_to_end(engine, prompt))[-1]
    assert isinstance(done, ExecutionSucceeded)
    assert await pixel_of(engine, done.outputs[0]) == (245, 235, 225)

    await engine.cleanup(JobFiles(inputs=(name,), outputs=done.outputs))
    assert not (engine.dirs.input / subfolder).exists()


async def test_runtime_error_names_the_node(engine):
    events = await run_to_end(engine, invert_prompt("../escape", red_image()))
    failed = events[-1]
    assert isinstance(failed, ExecutionFailed)
    assert (failed.node_id, failed.node_type) == ("3", "SaveImage")
    assert "outside the output folder" in failed.exception_message
    assert failed.traceback


async def test_invalid_prompts_are_rejected(engine):
    bad_width = invert_prompt("x", red_image())
    bad_width["1"]["inputs"]["width"] = -5
    [rejected] = await run_to_end(engine, bad_width)
    assert isinstance(rejected, PromptRejected)
    assert rejected.status == 400
    assert rejected.error_type == "prompt_outputs_failed_validation"
    assert "1" in rejected.node_errors

    unknown = invert_prompt("x", {"class_type": "NoSuchNode", "inputs": {}})
    [rejected] = await run_to_end(engine, unknown)
    assert isinstance(rejected, PromptRejected)
    assert rejected.status in (400, 500)


async def test_interrupt_stops_a_long_prompt_and_leaves_comfyui_usable(engine):
    deadline = time.monotonic() + RUN_BUDGET_S
    events = []
    async with aclosing(engine.run(slow_prompt(), "job-slow", deadline)) as run:
        async for event in run:
            events.append(event)
            if isinstance(event, NodeStarted) and event.node_id == "2":
                outcome = await engine.interrupt(event.prompt_id)
                assert outcome == CancelOutcome.INTERRUPTED
    interrupted = events[-1]
    assert isinstance(interrupted, ExecutionInterrupted)
    assert interrupted.prompt_id == events[0].prompt_id
    assert await engine.interrupt(interrupted.prompt_id) == CancelOutcome.NOT_FOUND

    after = await run_to_end(engine, invert_prompt("after-interrupt", red_image(32)))
    assert isinstance(after[-1], ExecutionSucceeded)


async def run_and_kill(engine) -> None:
    deadline = time.monotonic() + RUN_BUDGET_S
    async with aclosing(engine.run(slow_prompt(), "job-crash", deadline)) as run:
        async for event in run:
            if isinstance(event, NodeStarted):
                os.kill(engine.pid, signal.SIGKILL)


async def test_crash_is_detected_and_restart_brings_it_back(engine):
    with pytest.raises(EngineCrashed):
        await run_and_kill(engine)
    await asyncio.wait_for(engine.wait_exit(), 30)
    assert engine.crashed
    assert not await engine.ready()

    await engine.restart()
    assert not engine.crashed
    assert await engine.ready()
    done = (await run_to_end(engine, invert_prompt("after-restart", red_image(16))))[-1]
    assert isinstance(done, ExecutionSucceeded)
