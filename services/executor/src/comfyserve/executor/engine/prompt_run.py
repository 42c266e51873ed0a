"""Running one prompt on ComfyUI to its end: submitted once the WebSocket is
open, followed over it, and learnt from `/queue` and `/history` whenever the
socket drops or falls silent. A terminal message is passed on only once
`/history` files the prompt, so that an ending also means ComfyUI is free."""

import asyncio
import json
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from enum import StrEnum
from typing import Any

import aiohttp
import structlog

from comfyserve.executor.engine.client import ComfyClient
from comfyserve.executor.engine.errors import EngineTimeout, EngineUnavailable
from comfyserve.executor.engine.events import (
    EngineEvent,
    ExecutionFailed,
    ExecutionInterrupted,
    ExecutionSucceeded,
    PromptRejected,
)
from comfyserve.executor.engine.messages import (
    CompletionSignal,
    outcome_from_history,
    parse_binary,
    parse_message,
)

log = structlog.get_logger(__name__)

Outcome = ExecutionSucceeded | ExecutionFailed | ExecutionInterrupted


class PromptState(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    FINISHED = "finished"
    # Not queued and no history: deleted from the queue, or history was wiped.
    VANISHED = "vanished"


async def prompt_state(
    client: ComfyClient, prompt_id: str
) -> tuple[PromptState, Outcome | None]:
    # Queue first: ComfyUI moves a prompt from running to history atomically,
    # so "not queued" followed by "no history" really means gone.
    snapshot = await client.queue()
    if prompt_id in snapshot.running:
        return PromptState.RUNNING, None
    if prompt_id in snapshot.pending:
        return PromptState.PENDING, None
    entry = await client.history_entry(prompt_id)
    if entry is None:
        return PromptState.VANISHED, ExecutionInterrupted(prompt_id, None)
    return PromptState.FINISHED, outcome_from_history(prompt_id, entry)


async def run_prompt(
    client: ComfyClient,
    prompt: Mapping[str, Any],
    job_id: str,
    deadline: float,
    *,
    partner_key: str | None = None,
) -> AsyncGenerator[EngineEvent, None]:
    """Submit `prompt` and yield its events until a terminal one.

    `deadline` is a `time.monotonic()` instant; past it `EngineTimeout` is
    raised (the prompt is left to the caller to interrupt). Close the
    iterator (`contextlib.aclosing`) if you stop early.
    """
    client_id = uuid.uuid4().hex
    bound = log.bind(job_id=job_id, client_id=client_id)
    # Connect before submitting: ComfyUI does not replay missed messages.
    ws = await client.connect_ws(client_id)
    follower: _Follower | None = None
    try:
        submitted = await client.post_prompt(prompt, client_id, partner_key=partner_key)
        yield submitted
        if isinstance(submitted, PromptRejected):
            bound.info("executor.engine.prompt_rejected", status=submitted.status)
            return
        bound.info("executor.engine.prompt_queued", prompt_id=submitted.prompt_id)
        follower = _Follower(client, client_id, submitted.prompt_id, deadline, ws)
        async for event in follower.events():
            yield event
    finally:
        # The follower may have replaced the socket after a reconnect.
        current = ws if follower is None else follower.ws
        if current is not None:
            await current.close()


class _Follower:
    """Follows one submitted prompt over the WS, with /history + /queue fallback."""

    def __init__(
        self,
        client: ComfyClient,
        client_id: str,
        prompt_id: str,
        deadline: float,
        ws: aiohttp.ClientWebSocketResponse,
    ) -> None:
        self._client = client
        self._client_id = client_id
        self._prompt_id = prompt_id
        self._deadline = deadline
        self.ws: aiohttp.ClientWebSocketResponse | None = ws
        self._timeouts = client.timeouts
        self._log = log.bind(prompt_id=prompt_id, client_id=client_id)

    def _remaining(self) -> float:
        remaining = self._deadline - time.monotonic()
        if remaining <= 0:
            raise EngineTimeout(f"prompt {self._prompt_id} did not finish in time")
        return remaining

    async def events(self) -> AsyncIterator[EngineEvent]:
        backoff = self._timeouts.reconnect_backoff_min_s
        while True:
            remaining = self._remaining()
            if self.ws is None or self.ws.closed:
                outcome = await self._recover()
                if outcome is not None:
                    yield outcome
                    return
                if self.ws is None:
                    await asyncio.sleep(min(backoff, remaining))
                    backoff = min(backoff * 2, self._timeouts.reconnect_backoff_max_s)
                    continue
                backoff = self._timeouts.reconnect_backoff_min_s
            try:
                message = await self.ws.receive(
                    timeout=min(remaining, self._timeouts.silence_probe_s)
                )
            except TimeoutError:
                outcome = await self._probe()
                if outcome is not None:
                    yield outcome
                    return
                continue
            if message.type == aiohttp.WSMsgType.BINARY:
                preview = parse_binary(message.data, self._prompt_id)
                if preview is not None:
                    yield preview
                continue
            if message.type != aiohttp.WSMsgType.TEXT:
                self._log.warning(
                    "executor.engine.ws_dropped", ws_type=message.type.name
                )
                await self.ws.close()
                self.ws = None
                continue
            try:
                decoded = json.loads(message.data)
            except ValueError:
                continue
            result = parse_message(decoded, self._prompt_id)
            if result is None:
                continue
            if isinstance(result, CompletionSignal):
                yield await self._finished_outcome()
                return
            if isinstance(result, ExecutionFailed | ExecutionInterrupted):
                # Sent while the prompt still holds the queue; wait until it is
                # filed in history so that "terminal" means "ComfyUI is free".
                await self._finished_outcome()
                yield result
                return
            yield result

    async def _recover(self) -> Outcome | None:
        """After a WS drop: reconnect, then learn what was missed from the server."""
        self._client.check_alive()
        try:
            self.ws = await self._client.connect_ws(self._client_id)
        except EngineUnavailable:
            self.ws = None
        return await self._probe()

    async def _probe(self) -> Outcome | None:
        self._client.check_alive()
        try:
            state, outcome = await prompt_state(self._client, self._prompt_id)
        except EngineUnavailable:
            return None
        if state in (PromptState.PENDING, PromptState.RUNNING):
            return None
        self._log.info("executor.engine.finished_by_probe", state=state.value)
        return outcome

    async def _finished_outcome(self) -> Outcome:
        # Terminal messages are sent before the history entry is written
        # (all of them on G2+, execution_error/interrupted on G1 as well). The
        # entry usually follows within a few milliseconds, and every job waits
        # on this, so the first retries come quickly and then back off.
        delay = 0.002
        while True:
            remaining = self._remaining()
            self._client.check_alive()
            try:
                entry = await self._client.history_entry(self._prompt_id)
            except EngineUnavailable:
                entry = None
            if entry is not None:
                return outcome_from_history(self._prompt_id, entry)
            await asyncio.sleep(min(delay, remaining))
            delay = min(delay * 2, 1.0)
