"""Running one prompt on ComfyUI to its end: submitted once the engine's
WebSocket is open, followed over it, and learnt from `/queue` and `/history`
whenever the socket drops or falls silent. A terminal message is passed on only
once `/history` files the prompt, so that an ending also means ComfyUI is done
with it."""

import asyncio
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from enum import StrEnum
from typing import Any

import structlog

from comfyserve.executor.engine.client import ComfyClient
from comfyserve.executor.engine.errors import (
    EngineRestarted,
    EngineTimeout,
    EngineUnavailable,
)
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
from comfyserve.executor.engine.socket import Frame, Gap, PromptSocket

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
    socket: PromptSocket,
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
    client = socket.client
    bound = log.bind(job_id=job_id, client_id=socket.client_id)
    # Open before submitting: ComfyUI does not replay missed messages.
    await socket.open()
    requested_id = str(uuid.uuid4())
    followed = requested_id
    frames = socket.follow(requested_id)
    try:
        submitted = await client.post_prompt(
            prompt, socket.client_id, prompt_id=requested_id, partner_key=partner_key
        )
        yield submitted
        if isinstance(submitted, PromptRejected):
            bound.info("executor.engine.prompt_rejected", status=submitted.status)
            return
        bound.info("executor.engine.prompt_queued", prompt_id=submitted.prompt_id)
        if submitted.prompt_id != requested_id:
            # A 2024 build named its own id; its frames so far were kept.
            socket.unfollow(requested_id)
            followed = submitted.prompt_id
            frames = socket.follow(followed)
        follower = _Follower(socket, submitted.prompt_id, deadline, frames)
        async for event in follower.events():
            yield event
    finally:
        socket.unfollow(followed)


class _Follower:
    """Follows one submitted prompt's frames, with /history + /queue fallback."""

    def __init__(
        self,
        socket: PromptSocket,
        prompt_id: str,
        deadline: float,
        frames: asyncio.Queue[Frame],
    ) -> None:
        self._socket = socket
        self._client = socket.client
        self._prompt_id = prompt_id
        self._deadline = deadline
        self._frames = frames
        self._timeouts = self._client.timeouts
        self._probe_due = False
        self._log = log.bind(prompt_id=prompt_id, client_id=socket.client_id)

    def _remaining(self) -> float:
        remaining = self._deadline - time.monotonic()
        if remaining <= 0:
            raise EngineTimeout(f"prompt {self._prompt_id} did not finish in time")
        return remaining

    async def _next(self) -> Frame | None:
        """The next frame; None when it is time to probe: frames may have been
        missed (after the frames that came before the gap), or none came for
        the silence probe's time."""
        if self._probe_due and self._frames.empty():
            self._probe_due = False
            return None
        wait = min(self._remaining(), self._timeouts.silence_probe_s)
        try:
            async with asyncio.timeout(wait):
                return await self._frames.get()
        except TimeoutError:
            return None

    async def events(self) -> AsyncIterator[EngineEvent]:
        while True:
            frame = await self._next()
            if isinstance(frame, Gap):
                if self._socket.closing:
                    raise EngineRestarted(
                        f"ComfyUI went away under prompt {self._prompt_id}"
                    )
                self._probe_due = True
                continue
            if frame is None:
                outcome = await self._probe()
                if outcome is not None:
                    yield outcome
                    return
                continue
            if isinstance(frame, bytes):
                preview = parse_binary(frame, self._prompt_id)
                if preview is not None:
                    yield preview
                continue
            result = parse_message(frame, self._prompt_id)
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

    async def _probe(self) -> Outcome | None:
        self._client.check_alive()
        try:
            state, outcome = await prompt_state(self._client, self._prompt_id)
        except EngineUnavailable:
            return None
        if state is PromptState.RUNNING:
            # Previews name no prompt: after a drop the socket learns whose
            # they are from here until the next `executing`.
            self._socket.executing(self._prompt_id)
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
