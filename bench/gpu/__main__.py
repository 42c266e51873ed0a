"""Images per second on a GPU, through us against raw ComfyUI, in one run.

An SD1.5-shaped checkpoint of random weights is made on the machine
(`checkpoint.py`, ../shared/GPU.md), a ComfyUI of our own serves it, and the
product's executor drives that same ComfyUI. Then the same txt2img prompt
(512², 20 euler steps, cfg 7, a new seed each time so no cache answers) runs
one at a time and 8 queued at once, straight to ComfyUI and through the REST
API, alternating the paths. Each block's images/s is its images over its
wall time; the goal is ours ≥ 0.98× raw.

Without CUDA, or with `BENCH_GPU_DRY_RUN=1`, it is a CPU dry run of the same
code: a UNet of one level (ComfyUI still takes it for SD1.5), 64², one step,
one round of one job at a time and two queued. The checkpoints are kept in
the stack's cache.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import httpx
from httpx_sse import aconnect_sse

from bench.product import UNLIMITED, running_product
from infra.stack import CACHE, stack_env

HERE = Path(__file__).resolve().parent
FINAL = {"completed", "failed", "cancelled"}
PNG_MAGIC = b"\x89PNG"


@dataclass(frozen=True)
class Plan:
    dry_run: bool
    size: int
    steps: int
    one_at_a_time: int
    queued: int
    rounds: int

    @property
    def checkpoint(self) -> str:
        return (
            "sd15-random-tiny.safetensors"
            if self.dry_run
            else "sd15-random.safetensors"
        )


@dataclass
class Block:
    images: int = 0
    seconds: float = 0.0

    @property
    def per_s(self) -> float:
        return self.images / self.seconds if self.seconds else 0.0


@dataclass
class Tally:
    """Images/s per path and mode, over every round, and the images each path
    left: ComfyUI's history entries and our jobs' downloadable outputs."""

    blocks: dict[tuple[str, str], Block]
    produced: dict[str, int]


def cuda_available(python: str) -> bool:
    found = subprocess.run(
        [python, "-c", "import torch; print(torch.cuda.is_available())"],
        capture_output=True,
        text=True,
        check=True,
    )
    return found.stdout.strip() == "True"


def plan(python: str) -> Plan:
    dry = os.environ.get("BENCH_GPU_DRY_RUN") == "1" or not cuda_available(python)
    if dry:
        return Plan(True, size=64, steps=1, one_at_a_time=1, queued=2, rounds=1)
    return Plan(
        False,
        size=512,
        steps=20,
        one_at_a_time=int(os.environ.get("BENCH_JOBS", "8")),
        queued=8,
        rounds=int(os.environ.get("BENCH_ROUNDS", "2")),
    )


def ensure_checkpoint(env: dict[str, str], chosen: Plan) -> Path:
    """The checkpoint in the cache, made there first when missing (written
    aside and renamed, so an interrupted run leaves no half a file)."""
    folder = CACHE / "bench-gpu" / "checkpoints"
    target = folder / chosen.checkpoint
    if target.exists():
        return folder
    partial = folder / f".{uuid.uuid4().hex}.partial"
    flags = ["--tiny", "--cpu"] if chosen.dry_run else []
    subprocess.run(
        [env["COMFYUI_PYTHON"], str(HERE / "checkpoint.py"), str(partial), *flags],
        cwd=env["COMFYUI_PATH"],
        check=True,
    )
    partial.rename(target)
    return folder


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def own_comfyui(env: dict[str, str], checkpoints: Path, cpu: bool) -> Iterator[str]:
    """A ComfyUI of its own on a free port that finds the checkpoint, with its
    own input, output and temp folders; stopped on exit."""
    work = Path(tempfile.mkdtemp(prefix="bench-gpu-"))
    paths = work / "extra_model_paths.yaml"
    paths.write_text(
        f"bench:\n  base_path: {checkpoints.parent}\n"
        f"  checkpoints: {checkpoints.name}\n"
    )
    port = free_port()
    command = [
        env["COMFYUI_PYTHON"],
        "main.py",
        "--listen",
        "127.0.0.1",
        "--port",
        str(port),
        "--disable-auto-launch",
        "--extra-model-paths-config",
        str(paths),
        *("--output-directory", str(work / "output")),
        *("--input-directory", str(work / "input")),
        *("--temp-directory", str(work)),
        *(["--cpu"] if cpu else []),
    ]
    log = (work / "comfyui.log").open("wb")
    process = subprocess.Popen(
        command, cwd=env["COMFYUI_PATH"], stdout=log, stderr=subprocess.STDOUT
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while not _answers(url):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"ComfyUI did not start; see {work / 'comfyui.log'}")
            time.sleep(0.5)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/system_stats", timeout=2) as answer:
            return bool(answer.status == 200)
    except OSError:
        return False


def txt2img(chosen: Plan, seed: int) -> dict[str, Any]:
    size, ckpt = chosen.size, chosen.checkpoint
    return {
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": ckpt}},
        "5": {
            "class_type": "EmptyLatentImage",
            "inputs": {"width": size, "height": size, "batch_size": 1},
        },
        "6": {
            "class_type": "CLIPTextEncode",
            "inputs": {"text": "a lighthouse on a cliff at dusk", "clip": ["4", 1]},
        },
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["4", 1]}},
        "3": {
            "class_type": "KSampler",
            "inputs": {
                "seed": seed,
                "steps": chosen.steps,
                "cfg": 7.0,
                "sampler_name": "euler",
                "scheduler": "normal",
                "denoise": 1.0,
                "model": ["4", 0],
                "positive": ["6", 0],
                "negative": ["7", 0],
                "latent_image": ["5", 0],
            },
        },
        "8": {
            "class_type": "VAEDecode",
            "inputs": {"samples": ["3", 0], "vae": ["4", 2]},
        },
        "9": {
            "class_type": "SaveImage",
            "inputs": {"filename_prefix": "bench-gpu", "images": ["8", 0]},
        },
    }


class Raw:
    """Prompts straight to ComfyUI, followed over one websocket."""

    def __init__(self, session: aiohttp.ClientSession, url: str) -> None:
        self._session = session
        self._url = url

    async def run(self, graphs: list[dict[str, Any]]) -> list[str]:
        client_id = uuid.uuid4().hex
        async with self._session.ws_connect(
            f"{self._url}/ws?clientId={client_id}"
        ) as socket_:
            waiting: set[str] = set()
            for graph in graphs:
                async with self._session.post(
                    f"{self._url}/prompt",
                    json={"prompt": graph, "client_id": client_id},
                ) as answer:
                    answer.raise_for_status()
                    waiting.add((await answer.json())["prompt_id"])
            done = list(waiting)
            async for message in socket_:
                if message.type != aiohttp.WSMsgType.TEXT:
                    continue
                body = json.loads(message.data)
                data = body.get("data", {})
                if body.get("type") == "execution_error":
                    raise RuntimeError(f"ComfyUI failed a prompt: {data}")
                if body.get("type") == "executing" and data.get("node") is None:
                    waiting.discard(data.get("prompt_id"))
                    if not waiting:
                        return done
        raise RuntimeError("ComfyUI closed its websocket before the prompts ended")

    async def images(self, prompt_id: str) -> int:
        async with self._session.get(f"{self._url}/history/{prompt_id}") as answer:
            entry = (await answer.json())[prompt_id]
        return sum(len(node.get("images", [])) for node in entry["outputs"].values())


class Ours:
    """Jobs through the REST API, each followed over SSE to its final status."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self._client = client

    async def run(self, graphs: list[dict[str, Any]]) -> list[str]:
        return list(await asyncio.gather(*(self._one(graph) for graph in graphs)))

    async def _one(self, graph: dict[str, Any]) -> str:
        accepted = await self._client.post(
            "/workflows/execute", json={"workflow": graph}
        )
        accepted.raise_for_status()
        job_id: str = accepted.json()["execution_id"]
        async with aconnect_sse(
            self._client, "GET", f"/workflows/{job_id}/events"
        ) as source:
            async for event in source.aiter_sse():
                if event.event != "status":
                    continue
                status = json.loads(event.data)["status"]
                if status in FINAL:
                    if status != "completed":
                        raise RuntimeError(f"job {job_id} ended {status}")
                    return job_id
        raise RuntimeError(f"the event stream of job {job_id} ended early")

    async def images(self, job_id: str) -> int:
        """Outputs of the job whose bytes download as a PNG."""
        job = (await self._client.get(f"/workflows/{job_id}")).raise_for_status()
        found = 0
        for output in job.json()["outputs"]:
            if output.get("url") is None:
                continue
            fetched = await self._client.get(output["url"])
            found += fetched.status_code == 200 and fetched.content[:4] == PNG_MAGIC
        return found


async def measure(chosen: Plan, base_url: str, key: str, comfy_url: str) -> Tally:
    seeds = iter(range(1, 1 << 30))
    blocks = {
        (path, mode): Block()
        for path in ("raw", "ours")
        for mode in ("one_at_a_time", "queued")
    }
    produced = {"raw": 0, "ours": 0}
    headers = {"Authorization": f"Bearer {key}"}
    async with (
        httpx.AsyncClient(base_url=base_url, headers=headers, timeout=600) as client,
        aiohttp.ClientSession() as session,
    ):
        paths: dict[str, Raw | Ours] = {
            "raw": Raw(session, comfy_url),
            "ours": Ours(client),
        }
        # Loads the model once, for both: they share the one ComfyUI.
        for path in paths.values():
            await path.run([txt2img(chosen, next(seeds))])
        for round_ in range(chosen.rounds):
            # Alternating which path goes first, so drift hits both alike.
            order = ["raw", "ours"] if round_ % 2 == 0 else ["ours", "raw"]
            for mode, count in (
                ("one_at_a_time", chosen.one_at_a_time),
                ("queued", chosen.queued),
            ):
                for name in order:
                    path = paths[name]
                    start = time.perf_counter()
                    if mode == "queued":
                        ids = await path.run(
                            [txt2img(chosen, next(seeds)) for _ in range(count)]
                        )
                    else:
                        ids = []
                        for _ in range(count):
                            ids += await path.run([txt2img(chosen, next(seeds))])
                    block = blocks[(name, mode)]
                    block.seconds += time.perf_counter() - start
                    block.images += len(ids)
                    # Counted outside the timing: what each path really left.
                    for item in ids:
                        produced[name] += await path.images(item)
    return Tally(blocks, produced)


def report(chosen: Plan, tally: Tally, out: Any) -> None:
    kind = "CPU dry run" if chosen.dry_run else "GPU"
    out.write(
        f"{kind}: {chosen.checkpoint}, {chosen.size}x{chosen.size}, "
        f"{chosen.steps} steps, {chosen.rounds} rounds of {chosen.one_at_a_time} "
        f"one at a time and {chosen.queued} queued per path\n"
    )
    ratios = {}
    for mode, label in (("one_at_a_time", "one at a time"), ("queued", "queued")):
        raw, ours = tally.blocks[("raw", mode)], tally.blocks[("ours", mode)]
        ratios[mode] = ours.per_s / raw.per_s
        out.write(
            f"{label:14} raw {raw.per_s:7.3f} images/s  ours {ours.per_s:7.3f} "
            f"images/s  ratio {ratios[mode]:.3f}\n"
        )
    out.write(f"images raw={tally.produced['raw']} ours={tally.produced['ours']}\n")
    out.write(
        f"gpu images_per_s_ratio={min(ratios.values()):.3f} "
        f"one_at_a_time={ratios['one_at_a_time']:.3f} queued={ratios['queued']:.3f}\n"
    )


def main() -> int:
    # Stopped by a signal, the product and ComfyUI are still stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    env = stack_env()
    chosen = plan(env["COMFYUI_PYTHON"])
    checkpoints = ensure_checkpoint(env, chosen)
    with own_comfyui(env, checkpoints, cpu=chosen.dry_run) as comfy_url:
        extra = {**UNLIMITED, "executor": {"EXECUTOR_COMFYUI_URL": comfy_url}}
        with running_product(extra) as product:
            tally = asyncio.run(
                measure(chosen, product.base_url, product.key, comfy_url)
            )
    report(chosen, tally, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
