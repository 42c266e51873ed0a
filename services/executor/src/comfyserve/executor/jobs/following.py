"""Following the engine through one attempt's run: what each of its events means
for the attempt (its prompt, the nodes done, the outputs to store, how it
ends), and the progress events that tell the job's owner, throttled and split
to the event limits."""

from __future__ import annotations

import contextlib
from typing import Any

import structlog

from comfyserve.contracts.events import JobProgressData, JobProgressed, OutputFile
from comfyserve.contracts.limits import OUTPUTS_PER_EVENT
from comfyserve.executor.engine import (
    Engine,
    EngineError,
    EngineEvent,
    EngineUnavailable,
    ExecutionFailed,
    ExecutionInterrupted,
    ExecutionSucceeded,
    NodeCached,
    NodeExecuted,
    NodeProgress,
    NodeStarted,
    PreviewImage,
    PromptQueued,
    PromptRejected,
)
from comfyserve.executor.errors import OutputRejected, StorageFailed
from comfyserve.executor.jobs.models import NewPreview
from comfyserve.executor.jobs.ports import Clock, FileStore, Publisher
from comfyserve.executor.jobs.reporting import Reporter, send
from comfyserve.executor.jobs.state import Ending, JobState, StopReason
from comfyserve.executor.jobs.storing import OutputStorer
from comfyserve.executor.telemetry import Metrics, NodeSpans, tracer

log = structlog.get_logger(__name__)


def _fraction(state: JobState) -> float:
    """How far the run is: nodes done, plus the current node's share of steps."""
    total = len(state.graph)
    partial = 0.0
    if state.current_node not in state.done and state.step and state.max:
        partial = min(state.step / state.max, 1.0)
    return min((len(state.done) + partial) / total, 1.0) if total else 0.0


def _chunks(outputs: list[OutputFile]) -> list[list[OutputFile]]:
    # Many outputs are split across events, each well inside its topic's limit;
    # no outputs is still one event.
    return [
        outputs[i : i + OUTPUTS_PER_EVENT]
        for i in range(0, max(len(outputs), 1), OUTPUTS_PER_EVENT)
    ]


class Follower:
    """Follows the engine's run of the attempt it is given, storing each node's
    outputs as soon as the node finishes."""

    def __init__(
        self,
        *,
        engine: Engine,
        storer: OutputStorer,
        publisher: Publisher,
        clock: Clock,
        worker_id: str,
        progress_interval_s: float,
        files: FileStore,
        preview_interval_s: float,
        metrics: Metrics | None = None,
    ) -> None:
        self._engine = engine
        self._metrics = metrics
        self._storer = storer
        self._publisher = publisher
        self._clock = clock
        self._worker_id = worker_id
        self._progress_interval_s = progress_interval_s
        self._files = files
        self._preview_interval_s = preview_interval_s

    async def follow(
        self,
        state: JobState,
        reporter: Reporter,
        prompt: dict[str, Any],
        deadline: float,
    ) -> Ending:
        """Runs `prompt` until the engine tells how the attempt ends; `deadline`
        is the engine's own, a monotonic instant."""
        nodes = NodeSpans(state.class_type, metrics=self._metrics)
        with (
            tracer.start_as_current_span("comfyui.prompt"),
            contextlib.closing(nodes),
        ):
            async with contextlib.aclosing(
                self._engine.run(
                    prompt,
                    state.job_id,
                    deadline,
                    partner_key=state.assignment.partner_key,
                )
            ) as events:
                async for event in events:
                    nodes.observe(event)
                    ending = await self._on_event(state, reporter, event)
                    if ending is not None:
                        return ending
        raise EngineUnavailable("the engine's run ended without an outcome")

    async def interrupt(self, state: JobState) -> None:
        """Asks the engine to stop the attempt's prompt; a failure is logged."""
        # Without a prompt id yet, the run loop interrupts once ComfyUI answers.
        if state.prompt_id is None or state.run_ended:
            return
        try:
            outcome = await self._engine.interrupt(state.prompt_id)
        except EngineError as exc:
            log.warning(
                "executor.job.interrupt_failed", job_id=state.job_id, error=str(exc)
            )
            return
        log.info(
            "executor.job.interrupted",
            job_id=state.job_id,
            prompt_id=state.prompt_id,
            reason=None if state.stop is None else state.stop.value,
            outcome=outcome.value,
        )

    async def _on_event(
        self, state: JobState, reporter: Reporter, event: EngineEvent
    ) -> Ending | None:
        """The attempt's ending once the engine's events tell it; else None."""
        if not isinstance(event, PromptQueued):
            state.executing.set()
        match event:
            case PromptQueued(prompt_id=prompt_id):
                state.prompt_id = prompt_id
                if event.node_errors:
                    log.warning(
                        "executor.job.outputs_dropped",
                        job_id=state.job_id,
                        nodes=sorted(event.node_errors),
                    )
                if state.stop is not None:
                    await self.interrupt(state)
            case PromptRejected():
                state.run_ended = True
                return Ending(reporter.rejected(event))
            case NodeStarted(node_id=node_id):
                if state.current_node is not None:
                    state.done.add(state.current_node)
                state.current_node, state.step, state.max = node_id, None, None
                await self._progress(state, reporter)
            case NodeProgress():
                if event.node_id is not None and event.node_id != state.current_node:
                    state.current_node = event.node_id
                state.step, state.max = int(event.value), int(event.max)
                await self._progress(state, reporter)
            case NodeCached(node_ids=node_ids):
                state.done.update(node_ids)
                await self._progress(state, reporter)
            case PreviewImage():
                if await self._store_preview(state, event):
                    await self._progress(state, reporter, force=True)
            case NodeExecuted(node_id=node_id, outputs=refs):
                state.done.add(node_id)
                state.refs.extend(refs)
                stored = await self._storer.store_new(state, refs)
                await self._progress(state, reporter, stored)
            case ExecutionSucceeded():
                state.run_ended = True
                state.refs.extend(event.outputs + event.previews)
                await self._storer.store_new(state, event.outputs)
                if state.stop is StopReason.OUTPUT_LIMIT:
                    return Ending(reporter.stopped())
                duration_ms = int((self._clock.monotonic() - state.started_at) * 1000)
                return Ending(
                    reporter.completed(duration_ms, list(state.stored.values()))
                )
            case ExecutionFailed():
                state.run_ended = True
                if state.stop is not None:
                    return Ending(reporter.stopped())
                return Ending(reporter.node_failed(event))
            case ExecutionInterrupted():
                state.run_ended = True
                return Ending(reporter.stopped())
        return None

    async def _store_preview(self, state: JobState, preview: PreviewImage) -> bool:
        """Stores the preview when one is due (at most one per interval; a
        zero interval stores none); whether it did. Previews in between are
        dropped: only the latest matters to a client, and ComfyUI sends one
        per sampler step."""
        interval = self._preview_interval_s
        now = self._clock.monotonic()
        if interval <= 0 or (
            state.last_preview is not None and now - state.last_preview < interval
        ):
            return False
        state.last_preview = now
        state.previews += 1
        new = NewPreview(
            job_id=state.job_id,
            attempt=state.attempt,
            sequence=state.previews,
            content_type=preview.content_type,
            data=preview.data,
        )
        try:
            state.preview_file_id = await self._files.store_preview(
                state.tenant_id, new
            )
        except (StorageFailed, OutputRejected) as exc:
            # A preview is a courtesy: the run goes on without it.
            log.warning(
                "executor.job.preview_failed", job_id=state.job_id, error=exc.message
            )
            return False
        return True

    async def _progress(
        self,
        state: JobState,
        reporter: Reporter,
        outputs: list[OutputFile] | None = None,
        *,
        force: bool = False,
    ) -> None:
        """Sends progress when due; newly stored outputs and a new preview are
        sent at once."""
        now = self._clock.monotonic()
        due = (
            force
            or state.last_progress is None
            or now - state.last_progress >= self._progress_interval_s
        )
        if not outputs and not due:
            return
        state.last_progress = now
        fraction = _fraction(state)
        for chunk in _chunks(outputs or []):
            data = JobProgressData(
                attempt=state.attempt,
                worker_id=self._worker_id,
                node_id=state.current_node,
                class_type=state.class_type(state.current_node),
                step=state.step,
                max=state.max,
                fraction=fraction,
                nodes_done=len(state.done),
                nodes_total=len(state.graph),
                outputs=chunk,
                preview_file_id=state.preview_file_id,
            )
            await send(self._publisher, state, reporter.event(JobProgressed, data))
