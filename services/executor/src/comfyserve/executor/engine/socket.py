"""One long-lived ComfyUI WebSocket per engine, its frames routed by prompt id.

ComfyUI sends a prompt's messages to the client id the prompt was queued for,
so every prompt of this engine is queued for the socket's one client id and the
socket hands each frame to the follower of its prompt. Frames that name no
prompt are attributed here: a binary preview belongs to the prompt ComfyUI is
executing (learnt from `execution_start` / `executing`), `status` broadcasts
and the reconnect `executing` are dropped. When the socket drops it reconnects
with backoff and tells every follower, which then asks `/queue` and `/history`
what it missed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections import OrderedDict, deque
from collections.abc import Mapping
from enum import StrEnum
from typing import Any

import aiohttp
import structlog

from comfyserve.executor.engine.client import ComfyClient
from comfyserve.executor.engine.errors import EngineUnavailable
from comfyserve.executor.engine.messages import preview_prompt_id

log = structlog.get_logger(__name__)

# Frames of prompts nobody follows yet: a 2024 build names its own prompt id,
# known only once POST /prompt answers, and may have started the prompt by then.
_EARLY_PROMPTS = 16
_EARLY_FRAMES = 256

_CLOSE_WAIT_S = 1.0

_ENDS_EXECUTION = frozenset(
    {"execution_success", "execution_error", "execution_interrupted"}
)


class Gap(StrEnum):
    """Told to a follower: frames may have been missed, or will not come."""

    DROPPED = "dropped"
    RECONNECTED = "reconnected"
    # Its prompt was deleted from ComfyUI's queue, which sends nothing then.
    DEQUEUED = "dequeued"


# A decoded text frame, a binary frame, or a gap.
Frame = Mapping[str, Any] | bytes | Gap


class PromptSocket:
    """The engine's WebSocket; `follow` a prompt id before queueing it."""

    def __init__(self, client: ComfyClient) -> None:
        self._client = client
        self.client_id = uuid.uuid4().hex
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._ever_connected = False
        self._lock = asyncio.Lock()
        self._reader: asyncio.Task[None] | None = None
        self._closing = False
        self._wake = asyncio.Event()
        self._followers: dict[str, asyncio.Queue[Frame]] = {}
        self._early: OrderedDict[str, deque[Frame]] = OrderedDict()
        self._executing: str | None = None

    @property
    def client(self) -> ComfyClient:
        return self._client

    @property
    def closing(self) -> bool:
        return self._closing

    @property
    def connected(self) -> bool:
        return self._ws is not None and not self._ws.closed

    async def open(self) -> None:
        """Connects unless connected; raises `EngineUnavailable` when it cannot."""
        await self._connect()
        if self._reader is None:
            self._reader = asyncio.create_task(self._read(), name="comfyui-socket")

    async def close(self) -> None:
        self._closing = True
        self._wake.set()
        if self._ws is not None:
            # Ends the reader's receive; cancelling a task inside aiohttp's
            # receive does not always end it.
            await self._ws.close()
        reader, self._reader = self._reader, None
        if reader is not None:
            await asyncio.wait({reader}, timeout=_CLOSE_WAIT_S)
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
        if self._ws is not None:
            await self._ws.close()
            self._ws = None
        self._tell_all(Gap.DROPPED)

    def follow(self, prompt_id: str) -> asyncio.Queue[Frame]:
        """The frames of `prompt_id` from now on, with any that came before."""
        queue: asyncio.Queue[Frame] = asyncio.Queue()
        for frame in self._early.pop(prompt_id, ()):
            queue.put_nowait(frame)
        self._followers[prompt_id] = queue
        return queue

    def unfollow(self, prompt_id: str) -> None:
        self._followers.pop(prompt_id, None)
        if self._executing == prompt_id:
            self._executing = None

    def dequeued(self, prompt_id: str) -> None:
        queue = self._followers.get(prompt_id)
        if queue is not None:
            queue.put_nowait(Gap.DEQUEUED)

    def executing(self, prompt_id: str) -> None:
        """A follower learnt from `/queue` that ComfyUI runs `prompt_id`."""
        if self._executing is None:
            self._executing = prompt_id

    async def _connect(self) -> None:
        async with self._lock:
            if self._closing:
                raise EngineUnavailable("the engine's socket is closed")
            if self.connected:
                return
            self._ws = await self._client.connect_ws(self.client_id)
            if self._ever_connected:
                log.info("executor.engine.ws_reconnected")
                self._tell_all(Gap.RECONNECTED)
            self._ever_connected = True

    async def _read(self) -> None:
        timeouts = self._client.timeouts
        backoff = timeouts.reconnect_backoff_min_s
        while not self._closing:
            ws = self._ws
            if ws is None or ws.closed:
                try:
                    await self._connect()
                except EngineUnavailable:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), backoff)
                    backoff = min(backoff * 2, timeouts.reconnect_backoff_max_s)
                    continue
                backoff = timeouts.reconnect_backoff_min_s
                continue
            message = await ws.receive()
            if self.closing:
                return
            if message.type == aiohttp.WSMsgType.BINARY:
                self._route_binary(message.data)
            elif message.type == aiohttp.WSMsgType.TEXT:
                self._route_text(message.data)
            else:
                log.warning("executor.engine.ws_dropped", ws_type=message.type.name)
                await ws.close()
                self._ws = None
                self._executing = None
                self._tell_all(Gap.DROPPED)

    def _route_text(self, raw: str) -> None:
        try:
            decoded = json.loads(raw)
        except ValueError:
            return
        if not isinstance(decoded, Mapping):
            return
        data = decoded.get("data")
        prompt_id = data.get("prompt_id") if isinstance(data, Mapping) else None
        if not isinstance(prompt_id, str):
            return
        self._track(str(decoded.get("type")), prompt_id, decoded["data"])
        self._deliver(prompt_id, decoded)

    def _track(self, kind: str, prompt_id: str, data: Mapping[str, Any]) -> None:
        if kind == "execution_start" or (
            kind == "executing" and data.get("node") is not None
        ):
            self._executing = prompt_id
        elif (
            kind in _ENDS_EXECUTION or kind == "executing"
        ) and self._executing == prompt_id:
            self._executing = None

    def _route_binary(self, frame: bytes) -> None:
        prompt_id = preview_prompt_id(frame) or self._executing
        if prompt_id is not None:
            self._deliver(prompt_id, frame)

    def _deliver(self, prompt_id: str, frame: Frame) -> None:
        queue = self._followers.get(prompt_id)
        if queue is not None:
            queue.put_nowait(frame)
            return
        early = self._early.get(prompt_id)
        if early is None:
            early = self._early[prompt_id] = deque(maxlen=_EARLY_FRAMES)
            while len(self._early) > _EARLY_PROMPTS:
                self._early.popitem(last=False)
        early.append(frame)

    def _tell_all(self, gap: Gap) -> None:
        for queue in self._followers.values():
            queue.put_nowait(gap)
