"""`python -m comfyserve.executor` as a process: ready, then SIGTERM stops it
and its managed ComfyUI, exit code 0."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
import uuid

import httpx
import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]

START_S = 180.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def wait_ready(port: int, process: asyncio.subprocess.Process) -> None:
    async with httpx.AsyncClient() as client, asyncio.timeout(START_S):
        while process.returncode is None:
            try:
                answer = await client.get(f"http://127.0.0.1:{port}/health/ready")
            except httpx.TransportError:
                answer = None
            if answer is not None and answer.status_code == 200:
                return
            await asyncio.sleep(0.5)
    raise AssertionError(f"the executor exited with {process.returncode}")


async def test_sigterm_stops_the_worker_and_its_comfyui(stack, tmp_path):
    port = free_port()
    env = {
        **os.environ,
        "EXECUTOR_KAFKA_BOOTSTRAP_SERVERS": stack["KAFKA_BOOTSTRAP_SERVERS"],
        "EXECUTOR_POOL": f"main-{uuid.uuid4().hex[:8]}",
        # Nobody serves here: the worker keeps asking for work until stopped.
        "EXECUTOR_WORKFLOW_GRPC_TARGET": f"127.0.0.1:{free_port()}",
        "EXECUTOR_COMFYUI_PATH": stack["COMFYUI_PATH"],
        "EXECUTOR_COMFYUI_PYTHON": stack["COMFYUI_PYTHON"],
        "EXECUTOR_SCRATCH_DIR": str(tmp_path),
        "EXECUTOR_HTTP_PORT": str(port),
        "EXECUTOR_CPU": "true",
    }
    env.pop("EXECUTOR_COMFYUI_URL", None)
    log = tmp_path / "executor.log"
    with log.open("wb") as out:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "comfyserve.executor",
            env=env,
            stdout=out,
            stderr=asyncio.subprocess.STDOUT,
        )
        try:
            await wait_ready(port, process)
            process.send_signal(signal.SIGTERM)
            async with asyncio.timeout(60):
                code = await process.wait()
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()

    lines = [json.loads(line) for line in log.read_text().splitlines() if line]
    assert code == 0, lines[-5:]
    [started] = [line for line in lines if line["event"] == "executor.comfyui.started"]
    with pytest.raises(ProcessLookupError):
        os.kill(started["pid"], 0)
    assert any(line["event"] == "executor.stopping" for line in lines)
    # ComfyUI prints prompt values and tracebacks: none of it reaches the log.
    assert not any("comfyui.output" in line["event"] for line in lines)
    assert not any("To see the GUI go to" in json.dumps(line) for line in lines)
