"""What managed and remote engines share: everything that goes over HTTP/WS."""

import asyncio
import time
from collections.abc import AsyncGenerator, Callable, Mapping
from pathlib import Path
from typing import Any

import aiohttp
import structlog

from comfyserve.executor.engine.client import ClientTimeouts, ComfyClient
from comfyserve.executor.engine.errors import EngineStartFailed, EngineUnavailable
from comfyserve.executor.engine.events import CancelOutcome, EngineEvent, OutputRef
from comfyserve.executor.engine.files import ComfyDirs, JobFiles, delete_job_files
from comfyserve.executor.engine.prompt_run import run_prompt
from comfyserve.executor.engine.socket import PromptSocket

log = structlog.get_logger(__name__)


class ClientEngine:
    def __init__(
        self,
        *,
        dirs: ComfyDirs | None,
        timeouts: ClientTimeouts | None,
        ready_timeout_s: float,
    ) -> None:
        self._dirs = dirs
        self._timeouts = timeouts
        self._ready_timeout_s = ready_timeout_s
        self._client: ComfyClient | None = None
        self._socket: PromptSocket | None = None
        self._session: aiohttp.ClientSession | None = None

    @property
    def base_url(self) -> str:
        return self._require_client().base_url

    @property
    def dirs(self) -> ComfyDirs | None:
        return self._dirs

    @property
    def local_roots(self) -> tuple[Path, ...]:
        """Where this engine keeps files: paths never to show a job's owner."""
        if self._dirs is None:
            return ()
        return (self._dirs.input, self._dirs.output, self._dirs.temp)

    def _require_client(self) -> ComfyClient:
        if self._client is None:
            raise EngineUnavailable("the engine is not started")
        return self._client

    async def _open_client(
        self, base_url: str, liveness: Callable[[], None] | None = None
    ) -> ComfyClient:
        await self._close_client()
        self._session = aiohttp.ClientSession()
        self._client = ComfyClient(
            base_url, self._session, timeouts=self._timeouts, liveness=liveness
        )
        # One socket for every prompt of this ComfyUI, opened by the first run:
        # a socket per prompt cost a connection's round trips on every job.
        self._socket = PromptSocket(self._client)
        return self._client

    async def _close_client(self) -> None:
        if self._socket is not None:
            await self._socket.close()
        if self._session is not None:
            await self._session.close()
        self._session = None
        self._socket = None
        self._client = None

    async def _wait_ready(
        self, deadline: float, gone: Callable[[], str | None] = lambda: None
    ) -> None:
        """Poll `/system_stats` until it answers; `gone` reports why to give up."""
        client = self._require_client()
        delay = 0.1
        while not await client.ready(self._ready_timeout_s):
            reason = gone()
            if reason is not None:
                raise EngineStartFailed(reason)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise EngineStartFailed(f"{client.base_url} was not ready in time")
            await asyncio.sleep(min(delay, remaining))
            delay = min(delay * 2, 1.0)

    async def ready(self) -> bool:
        if self._client is None:
            return False
        return await self._client.ready(self._ready_timeout_s)

    async def object_info(self) -> dict[str, Any]:
        return await self._require_client().object_info()

    async def system_stats(self) -> dict[str, Any]:
        return await self._require_client().system_stats()

    async def upload_input(self, data: bytes, filename: str, subfolder: str) -> str:
        return await self._require_client().upload_input(data, filename, subfolder)

    def run(
        self,
        prompt: Mapping[str, Any],
        job_id: str,
        deadline: float,
        *,
        partner_key: str | None = None,
    ) -> AsyncGenerator[EngineEvent, None]:
        if self._socket is None:
            raise EngineUnavailable("the engine is not started")
        return run_prompt(
            self._socket, prompt, job_id, deadline, partner_key=partner_key
        )

    async def interrupt(self, prompt_id: str) -> CancelOutcome:
        outcome = await self._require_client().interrupt(prompt_id)
        if outcome is CancelOutcome.DEQUEUED and self._socket is not None:
            # Its follower learns it from /queue now, not at the next silence.
            self._socket.dequeued(prompt_id)
        return outcome

    async def fetch_output(self, ref: OutputRef) -> bytes:
        return await self._require_client().fetch_output(ref)

    async def cleanup(self, files: JobFiles) -> None:
        if self._dirs is None:
            # A remote ComfyUI's folders are not ours to reach.
            log.info("executor.engine.cleanup_skipped", files=len(files.outputs))
            return
        await asyncio.to_thread(delete_job_files, self._dirs, files)
