"""HTTP + WebSocket client for one ComfyUI server, tolerant of the 2024-2026 APIs:
one call per route. Following a prompt's run over them is `prompt_run`."""

import asyncio
import json
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp

from comfyserve.contracts.workflow_format import PARTNER_KEY
from comfyserve.executor.engine.errors import (
    EngineError,
    EngineUnavailable,
    OutputNotFound,
    UnexpectedResponse,
)
from comfyserve.executor.engine.events import (
    CancelOutcome,
    OutputRef,
    PromptQueued,
    PromptRejected,
)

# Previews and custom-node frames can be large; ComfyUI itself allows big uploads.
_WS_MAX_MESSAGE = 256 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class QueueSnapshot:
    running: tuple[str, ...]
    pending: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ClientTimeouts:
    request_s: float = 30.0
    download_s: float = 600.0
    # Without any WS message for this long, ask /queue + /history directly.
    silence_probe_s: float = 10.0
    reconnect_backoff_min_s: float = 0.25
    reconnect_backoff_max_s: float = 5.0
    ws_heartbeat_s: float = 20.0


def _queue_ids(items: Any) -> tuple[str, ...]:
    if not isinstance(items, list):
        return ()
    # Queue items are [number, prompt_id, prompt, extra_data, outputs, ...].
    return tuple(
        str(item[1]) for item in items if isinstance(item, list) and len(item) > 1
    )


class ComfyClient:
    """Drives one ComfyUI base URL. Uses only the plain routes, which every
    generation serves (the `/api` mirror is missing on 2024 builds)."""

    def __init__(
        self,
        base_url: str,
        session: aiohttp.ClientSession,
        *,
        timeouts: ClientTimeouts | None = None,
        liveness: Callable[[], None] | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._session = session
        self._timeouts = timeouts or ClientTimeouts()
        self._liveness = liveness or (lambda: None)

    @property
    def timeouts(self) -> ClientTimeouts:
        return self._timeouts

    def check_alive(self) -> None:
        """Raises when the engine behind this URL is known dead (managed mode)."""
        self._liveness()

    def _url(self, path: str) -> str:
        return f"{self.base_url}{path}"

    def _ws_url(self, client_id: str) -> str:
        scheme, rest = self.base_url.split("://", 1)
        ws_scheme = "wss" if scheme == "https" else "ws"
        return f"{ws_scheme}://{rest}/ws?clientId={client_id}"

    async def _get_json(self, path: str, timeout_s: float | None = None) -> Any:
        timeout = aiohttp.ClientTimeout(total=timeout_s or self._timeouts.request_s)
        try:
            async with self._session.get(self._url(path), timeout=timeout) as resp:
                if resp.status != 200:
                    raise UnexpectedResponse(path, resp.status)
                return await resp.json(content_type=None)
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise EngineUnavailable(f"GET {path}: {exc!r}") from exc

    async def _post_json(self, path: str, body: Mapping[str, Any]) -> None:
        timeout = aiohttp.ClientTimeout(total=self._timeouts.request_s)
        try:
            async with self._session.post(
                self._url(path), json=body, timeout=timeout
            ) as resp:
                if resp.status != 200:
                    raise UnexpectedResponse(path, resp.status)
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise EngineUnavailable(f"POST {path}: {exc!r}") from exc

    async def ready(self, timeout_s: float = 5.0) -> bool:
        try:
            await self._get_json("/system_stats", timeout_s)
        except EngineError:
            return False
        return True

    async def system_stats(self) -> dict[str, Any]:
        stats = await self._get_json("/system_stats")
        return stats if isinstance(stats, dict) else {}

    async def object_info(self) -> dict[str, Any]:
        info = await self._get_json("/object_info")
        return info if isinstance(info, dict) else {}

    async def queue(self) -> QueueSnapshot:
        body = await self._get_json("/queue")
        if not isinstance(body, dict):
            raise UnexpectedResponse("/queue", 200)
        return QueueSnapshot(
            running=_queue_ids(body.get("queue_running")),
            pending=_queue_ids(body.get("queue_pending")),
        )

    async def history_entry(self, prompt_id: str) -> dict[str, Any] | None:
        """The finished prompt's entry; None while unknown, queued or running."""
        body = await self._get_json(f"/history/{prompt_id}")
        if isinstance(body, dict):
            entry = body.get(prompt_id)
            if isinstance(entry, dict):
                return entry
        return None

    async def upload_input(
        self, data: bytes, filename: str, subfolder: str = ""
    ) -> str:
        """Store an input file; returns the name to put into a loader node
        (`sub/x.png`), which may differ from `filename` (`x (1).png`)."""
        form = aiohttp.FormData()
        form.add_field(
            "image", data, filename=filename, content_type="application/octet-stream"
        )
        form.add_field("type", "input")
        form.add_field("subfolder", subfolder)
        form.add_field("overwrite", "true")
        timeout = aiohttp.ClientTimeout(total=self._timeouts.download_s)
        try:
            async with self._session.post(
                self._url("/upload/image"), data=form, timeout=timeout
            ) as resp:
                if resp.status != 200:
                    raise UnexpectedResponse("/upload/image", resp.status)
                body = await resp.json(content_type=None)
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise EngineUnavailable(f"POST /upload/image: {exc!r}") from exc
        if not isinstance(body, dict) or not body.get("name"):
            raise UnexpectedResponse("/upload/image", 200)
        name = str(body["name"])
        stored_subfolder = str(body.get("subfolder") or "")
        return f"{stored_subfolder}/{name}" if stored_subfolder else name

    async def fetch_output(self, ref: OutputRef) -> bytes:
        params = {
            "filename": ref.filename,
            "subfolder": ref.subfolder,
            "type": ref.folder_type,
        }
        timeout = aiohttp.ClientTimeout(total=self._timeouts.download_s)
        try:
            async with self._session.get(
                self._url("/view"), params=params, timeout=timeout
            ) as resp:
                if resp.status == 404:
                    raise OutputNotFound(f"{ref.folder_type}/{ref.subfolder}")
                if resp.status != 200:
                    raise UnexpectedResponse("/view", resp.status)
                return await resp.read()
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise EngineUnavailable(f"GET /view: {exc!r}") from exc

    async def delete_pending(self, prompt_id: str) -> None:
        await self._post_json("/queue", {"delete": [prompt_id]})

    async def interrupt(self, prompt_id: str) -> CancelOutcome:
        """Stop `prompt_id` if it runs, or drop it from the queue if it waits.

        2024 builds interrupt whatever runs and ignore the body, so the queue is
        checked first. Between that check and the POST the prompt may finish and
        the next one start: with a job staged behind it (`EXECUTOR_PREFETCH`)
        that job may be interrupted, and it ends as a retryable failure (no
        stop was asked for it), never as cancelled. Later builds honour the id.
        """
        snapshot = await self.queue()
        if prompt_id in snapshot.running:
            await self._post_json("/interrupt", {"prompt_id": prompt_id})
            return CancelOutcome.INTERRUPTED
        if prompt_id in snapshot.pending:
            await self.delete_pending(prompt_id)
            return CancelOutcome.DEQUEUED
        return CancelOutcome.NOT_FOUND

    async def connect_ws(self, client_id: str) -> aiohttp.ClientWebSocketResponse:
        timeout = aiohttp.ClientWSTimeout(ws_close=5.0)
        try:
            return await asyncio.wait_for(
                self._session.ws_connect(
                    self._ws_url(client_id),
                    heartbeat=self._timeouts.ws_heartbeat_s,
                    max_msg_size=_WS_MAX_MESSAGE,
                    timeout=timeout,
                ),
                self._timeouts.request_s,
            )
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise EngineUnavailable(f"GET /ws: {exc!r}") from exc

    async def post_prompt(
        self,
        prompt: Mapping[str, Any],
        client_id: str,
        *,
        prompt_id: str | None = None,
        partner_key: str | None = None,
    ) -> PromptQueued | PromptRejected:
        """Queue `prompt` for the WebSocket client `client_id` under
        `prompt_id` (a fresh one if None), with the partner-node key in
        `extra_data` when the job has one (ComfyUI keeps it out of its
        history)."""
        requested_id = prompt_id or str(uuid.uuid4())
        body: dict[str, Any] = {
            "prompt": prompt,
            "client_id": client_id,
            "prompt_id": requested_id,
        }
        if partner_key is not None:
            body["extra_data"] = {PARTNER_KEY: partner_key}
        timeout = aiohttp.ClientTimeout(total=self._timeouts.request_s)
        try:
            async with self._session.post(
                self._url("/prompt"), json=body, timeout=timeout
            ) as resp:
                text = await resp.text()
                status = resp.status
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise EngineUnavailable(f"POST /prompt: {exc!r}") from exc
        try:
            answer: Any = json.loads(text)
        except ValueError:
            answer = text
        if status != 200:
            return PromptRejected(status=status, body=answer)
        if not isinstance(answer, dict) or not answer.get("prompt_id"):
            raise UnexpectedResponse("/prompt", status)
        node_errors = answer.get("node_errors")
        number = answer.get("number")
        # 2024 builds ignore the requested id: always use the one they return.
        return PromptQueued(
            prompt_id=str(answer["prompt_id"]),
            number=int(number) if isinstance(number, int | float) else None,
            node_errors=node_errors if isinstance(node_errors, dict) else {},
        )
