"""Runs one submitted job on the engine: claim, stage, run, store, report."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import hashlib
import io
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, TypeVar

import structlog
from PIL import Image

from comfyserve.contracts.events import (
    Event,
    FailureCode,
    JobCancelled,
    JobCancelledData,
    JobCompleted,
    JobCompletedData,
    JobFailed,
    JobFailedData,
    JobProgressData,
    JobProgressed,
    JobStarted,
    JobStartedData,
    JobSubmitted,
    OutputFile,
)
from comfyserve.contracts.events import OutputKind as ContractOutputKind
from comfyserve.executor.engine import (
    Engine,
    EngineCrashed,
    EngineError,
    EngineEvent,
    EngineTimeout,
    EngineUnavailable,
    ExecutionFailed,
    ExecutionInterrupted,
    ExecutionSucceeded,
    JobFiles,
    NodeCached,
    NodeExecuted,
    NodeProgress,
    NodeStarted,
    OutputKind,
    OutputRef,
    PromptQueued,
    PromptRejected,
)
from comfyserve.executor.errors import ExecutorError, InputUnavailable
from comfyserve.executor.jobs.models import JobResult, NewOutput, Outcome
from comfyserve.executor.jobs.ports import (
    Claims,
    Clock,
    EngineKeeper,
    FileStore,
    Publisher,
)

log = structlog.get_logger(__name__)

# The engine's own deadline is only a backstop behind the runner's guard.
_ENGINE_DEADLINE_MARGIN_S = 5.0
_SHUTDOWN_INTERRUPT_S = 5.0
_MESSAGE_LIMIT = 4000

_E = TypeVar("_E", bound=Event)


class StopReason(StrEnum):
    CANCEL = "cancel"
    TIMEOUT = "timeout"


@dataclass(frozen=True, slots=True)
class RunnerConfig:
    worker_id: str
    source: str
    progress_interval_s: float
    interrupt_grace_s: float


@dataclass(eq=False)
class _JobState:
    job: JobSubmitted
    attempt: int = 0
    started_at: float = 0.0
    stop: StopReason | None = None
    cancel_reason: str = ""
    stop_requested: asyncio.Event = field(default_factory=asyncio.Event)
    prompt_id: str | None = None
    run_ended: bool = False
    hung: bool = False
    inputs: list[str] = field(default_factory=list)
    refs: list[OutputRef] = field(default_factory=list)
    stored: dict[tuple[str, int], OutputFile] = field(default_factory=dict)
    done: set[str] = field(default_factory=set)
    current_node: str | None = None
    step: int | None = None
    max: int | None = None
    last_progress: float | None = None
    deliveries: list[asyncio.Future[object]] = field(default_factory=list)

    @property
    def job_id(self) -> str:
        return self.job.subject

    @property
    def tenant_id(self) -> str:
        return self.job.tenant_id or ""

    @property
    def graph(self) -> Mapping[str, Any]:
        return self.job.data.workflow

    def class_type(self, node_id: str | None) -> str | None:
        node = self.graph.get(node_id) if node_id is not None else None
        if isinstance(node, dict) and isinstance(node.get("class_type"), str):
            return str(node["class_type"])
        return None

    def request_stop(self, reason: StopReason, why: str = "") -> None:
        if self.stop is None:
            self.stop = reason
            self.cancel_reason = why
        self.stop_requested.set()


@dataclass(frozen=True, slots=True)
class _Ending:
    """The final event of an attempt, and why the engine must restart first."""

    event: Event
    restart: str | None = None


RUN_MARK_INPUT = "comfyserve_run"


def force_fresh_outputs(prompt: dict[str, Any], token: str) -> None:
    """Make every sink node of `prompt` run again, while its inputs stay cached.

    ComfyUI answers a prompt it has seen from its cache, naming the files an earlier
    job saved — and that job's clean-up deleted them. An extra input, unique per
    attempt, on each node nothing links from changes only those nodes' cache keys;
    ComfyUI passes a node only the inputs it declares, so the node never sees it.
    """
    linked = {
        value[0]
        for node in prompt.values()
        for value in node.get("inputs", {}).values()
        if isinstance(value, list) and len(value) == 2
    }
    for node_id, node in prompt.items():
        if node_id not in linked and isinstance(node.get("inputs"), dict):
            node["inputs"][RUN_MARK_INPUT] = token


def image_size(data: bytes) -> tuple[int, int] | None:
    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
    except (OSError, ValueError, Image.DecompressionBombError):
        return None
    return width, height


def _clip(text: str) -> str:
    return text if len(text) <= _MESSAGE_LIMIT else text[: _MESSAGE_LIMIT - 1] + "…"


def describe_rejection(rejected: PromptRejected) -> str:
    """ComfyUI's /prompt validation answer as one readable message."""
    body = rejected.body
    if not isinstance(body, dict):
        return _clip(f"ComfyUI rejected the prompt (HTTP {rejected.status}): {body}")
    parts: list[str] = []
    error = body.get("error")
    if isinstance(error, dict):
        parts.append(_error_item(error))
    elif error:
        parts.append(str(error))
    for node_id, node_error in rejected.node_errors.items():
        if not isinstance(node_error, dict):
            continue
        items = node_error.get("errors")
        details = "; ".join(
            _error_item(item) for item in items or () if isinstance(item, dict)
        )
        class_type = node_error.get("class_type") or "?"
        parts.append(f"node {node_id} ({class_type}): {details}")
    return _clip(" | ".join(parts) or json.dumps(body))


def _error_item(item: Mapping[str, Any]) -> str:
    text = str(item.get("message") or item.get("type") or "error")
    details = item.get("details")
    return f"{text}: {details}" if details else text


class JobRunner:
    """Runs one job at a time; `request_cancel` may be called from any task."""

    def __init__(
        self,
        *,
        engine: Engine,
        claims: Claims,
        files: FileStore,
        publisher: Publisher,
        keeper: EngineKeeper,
        clock: Clock,
        config: RunnerConfig,
    ) -> None:
        self._engine = engine
        self._claims = claims
        self._files = files
        self._publisher = publisher
        self._keeper = keeper
        self._clock = clock
        self._config = config
        self._state: _JobState | None = None

    @property
    def current_job_id(self) -> str | None:
        return None if self._state is None else self._state.job_id

    def request_cancel(
        self, job_id: str, reason: str, tenant_id: str | None = None
    ) -> bool:
        """Stops the current job if it is `job_id`; any other job is not ours."""
        state = self._state
        if state is None or state.job_id != job_id:
            return False
        if tenant_id is not None and tenant_id != state.job.tenant_id:
            log.warning("executor.job.cancel_tenant_mismatch", job_id=job_id)
            return False
        log.info("executor.job.cancel_requested", job_id=job_id)
        state.request_stop(StopReason.CANCEL, reason)
        return True

    async def handle(self, job: JobSubmitted) -> JobResult:
        state = _JobState(job)
        self._state = state
        try:
            return await self._handle(state)
        finally:
            self._state = None

    async def _handle(self, state: _JobState) -> JobResult:
        bound = log.bind(job_id=state.job_id, tenant_id=state.tenant_id)
        claim = await self._claims.claim(
            state.tenant_id, state.job_id, self._config.worker_id
        )
        if not claim.granted:
            bound.info("executor.job.skipped", reason=claim.reason)
            return JobResult(Outcome.SKIPPED)
        state.attempt = claim.attempt
        state.started_at = self._clock.monotonic()
        bound.info("executor.job.started", attempt=claim.attempt)
        await self._send(
            state,
            self._event(
                JobStarted,
                state,
                JobStartedData(attempt=claim.attempt, worker_id=self._config.worker_id),
            ),
        )
        ending = await self._attempt(state)
        if ending.restart is not None:
            await self._keeper.restart(ending.restart)
        # The final event's acknowledgement, after which the offset is committed,
        # must imply every earlier event of the job was delivered: an earlier
        # failure raises here, so the record stays uncommitted and runs again.
        for delivery in state.deliveries:
            await delivery
        await self._publisher.publish(ending.event)
        duration_s = self._clock.monotonic() - state.started_at
        result = _result_of(ending.event, duration_s)
        bound.info(
            "executor.job.finished",
            outcome=result.outcome.value,
            code=None if result.failure is None else result.failure.value,
            duration_s=round(duration_s, 3),
        )
        return result

    def _deadline(self, state: _JobState) -> float:
        data = state.job.data
        until_deadline = (data.deadline - self._clock.now()).total_seconds()
        return self._clock.monotonic() + min(
            float(data.timeout_seconds), until_deadline
        )

    async def _attempt(self, state: _JobState) -> _Ending:
        deadline = self._deadline(state)
        if deadline <= self._clock.monotonic():
            return self._failed(
                state,
                FailureCode.TIMEOUT,
                "the job's deadline passed before it started",
                retryable=False,
            )
        work = asyncio.create_task(self._work(state, deadline))
        guard = asyncio.create_task(self._guard(state, deadline, work))
        try:
            return await work
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if not state.hung or (current is not None and current.cancelling()):
                await self._interrupt_on_shutdown(state)
                raise
            return self._hung(state)
        finally:
            guard.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await guard
            await self._cleanup(state)

    async def _guard(
        self, state: _JobState, deadline: float, work: asyncio.Task[_Ending]
    ) -> None:
        """At the deadline or on cancel: interrupt, then give up after a grace."""
        timer = asyncio.ensure_future(
            self._clock.sleep(deadline - self._clock.monotonic())
        )
        stopped = asyncio.ensure_future(state.stop_requested.wait())
        try:
            await asyncio.wait({timer, stopped}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            timer.cancel()
            stopped.cancel()
        state.request_stop(StopReason.TIMEOUT)
        await self._interrupt(state)
        await self._clock.sleep(self._config.interrupt_grace_s)
        log.warning(
            "executor.job.stop_ignored", job_id=state.job_id, prompt_id=state.prompt_id
        )
        state.hung = True
        work.cancel()

    async def _interrupt(self, state: _JobState) -> None:
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

    async def _interrupt_on_shutdown(self, state: _JobState) -> None:
        # The worker is going away: leave no prompt of ours running on ComfyUI.
        if state.prompt_id is None or state.run_ended:
            return
        with contextlib.suppress(EngineError, TimeoutError):
            await asyncio.wait_for(
                self._engine.interrupt(state.prompt_id), _SHUTDOWN_INTERRUPT_S
            )

    def _hung(self, state: _JobState) -> _Ending:
        restart = None
        if state.prompt_id is not None and not state.run_ended:
            restart = f"prompt {state.prompt_id} ignored an interrupt"
        ending = self._stopped(state)
        return _Ending(ending.event, restart)

    async def _cleanup(self, state: _JobState) -> None:
        files = JobFiles(inputs=tuple(state.inputs), outputs=tuple(state.refs))
        try:
            await self._engine.cleanup(files)
        except (EngineError, OSError) as exc:
            log.warning(
                "executor.job.cleanup_failed", job_id=state.job_id, error=str(exc)
            )

    async def _work(self, state: _JobState, deadline: float) -> _Ending:
        try:
            prompt = await self._stage_inputs(state)
            force_fresh_outputs(prompt, f"{state.job_id}:{state.attempt}")
            if state.stop is not None:
                return self._stopped(state)
            return await self._run(state, prompt, deadline)
        except ExecutorError as exc:
            return self._failed(state, exc.code, exc.message, retryable=exc.retryable)
        except EngineTimeout:
            # Only a backstop: the guard normally gives up on the run first.
            state.request_stop(StopReason.TIMEOUT)
            state.hung = True
            return self._hung(state)
        except (EngineCrashed, EngineUnavailable) as exc:
            return _Ending(
                self._failed(state, FailureCode.ENGINE_CRASHED, str(exc), True).event,
                restart=str(exc),
            )
        except EngineError as exc:
            return self._failed(state, FailureCode.ENGINE_CRASHED, str(exc), True)
        except Exception as exc:
            # A bug must still end the attempt, or the record would loop forever.
            log.exception("executor.job.crashed", job_id=state.job_id)
            return self._failed(state, FailureCode.INTERNAL_ERROR, repr(exc), True)

    async def _stage_inputs(self, state: _JobState) -> dict[str, Any]:
        prompt = copy.deepcopy(dict(state.graph))
        for file in state.job.data.inputs:
            node = prompt.get(file.node_id)
            if not isinstance(node, dict) or not isinstance(node.get("inputs"), dict):
                raise InputUnavailable(
                    f"input {file.file_id} targets node {file.node_id}, "
                    "which the workflow does not have"
                )
            data = await self._files.fetch_input(state.tenant_id, file)
            name = await self._engine.upload_input(
                data, file.filename, subfolder=state.job_id
            )
            state.inputs.append(name)
            node["inputs"][file.input_name] = name
        return prompt

    async def _run(
        self, state: _JobState, prompt: dict[str, Any], deadline: float
    ) -> _Ending:
        engine_deadline = (
            deadline + self._config.interrupt_grace_s + _ENGINE_DEADLINE_MARGIN_S
        )
        async with contextlib.aclosing(
            self._engine.run(prompt, state.job_id, engine_deadline)
        ) as events:
            async for event in events:
                ending = await self._on_event(state, event)
                if ending is not None:
                    return ending
        raise EngineUnavailable("the engine's run ended without an outcome")

    async def _on_event(self, state: _JobState, event: EngineEvent) -> _Ending | None:
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
                    await self._interrupt(state)
            case PromptRejected():
                state.run_ended = True
                message = describe_rejection(event)
                return self._failed(state, FailureCode.INVALID_WORKFLOW, message, False)
            case NodeStarted(node_id=node_id):
                if state.current_node is not None:
                    state.done.add(state.current_node)
                state.current_node, state.step, state.max = node_id, None, None
                await self._progress(state)
            case NodeProgress():
                if event.node_id is not None and event.node_id != state.current_node:
                    state.current_node = event.node_id
                state.step, state.max = int(event.value), int(event.max)
                await self._progress(state)
            case NodeCached(node_ids=node_ids):
                state.done.update(node_ids)
                await self._progress(state)
            case NodeExecuted(node_id=node_id, outputs=refs):
                state.done.add(node_id)
                state.refs.extend(refs)
                stored = await self._store_all(state, refs)
                await self._progress(state, stored)
            case ExecutionSucceeded():
                state.run_ended = True
                state.refs.extend(event.outputs + event.previews)
                await self._store_all(state, event.outputs)
                return self._completed(state)
            case ExecutionFailed():
                state.run_ended = True
                return self._node_failed(state, event)
            case ExecutionInterrupted():
                state.run_ended = True
                return self._stopped(state)
        return None

    async def _store_all(
        self, state: _JobState, refs: tuple[OutputRef, ...]
    ) -> list[OutputFile]:
        stored: list[OutputFile] = []
        for ref in refs:
            if ref.is_preview or (ref.node_id, ref.index) in state.stored:
                continue
            stored.append(await self._store(state, ref))
        return stored

    async def _store(self, state: _JobState, ref: OutputRef) -> OutputFile:
        data = await self._engine.fetch_output(ref)
        size = image_size(data) if ref.kind == OutputKind.IMAGE else None
        output = await self._files.store_output(
            state.tenant_id,
            NewOutput(
                job_id=state.job_id,
                node_id=ref.node_id,
                index=ref.index,
                filename=ref.filename,
                kind=ContractOutputKind(ref.kind.value),
                content_type=ref.content_type,
                data=data,
                sha256=hashlib.sha256(data).hexdigest(),
                width=None if size is None else size[0],
                height=None if size is None else size[1],
            ),
        )
        state.stored[(ref.node_id, ref.index)] = output
        log.info(
            "executor.job.output_stored",
            job_id=state.job_id,
            node_id=ref.node_id,
            index=ref.index,
            file_id=output.file_id,
        )
        return output

    async def _progress(
        self, state: _JobState, outputs: list[OutputFile] | None = None
    ) -> None:
        now = self._clock.monotonic()
        due = (
            state.last_progress is None
            or now - state.last_progress >= self._config.progress_interval_s
        )
        if not outputs and not due:
            return
        state.last_progress = now
        total = len(state.graph)
        partial = 0.0
        if state.current_node not in state.done and state.step and state.max:
            partial = min(state.step / state.max, 1.0)
        fraction = min((len(state.done) + partial) / total, 1.0) if total else 0.0
        data = JobProgressData(
            attempt=state.attempt,
            worker_id=self._config.worker_id,
            node_id=state.current_node,
            class_type=state.class_type(state.current_node),
            step=state.step,
            max=state.max,
            fraction=fraction,
            nodes_done=len(state.done),
            nodes_total=total,
            outputs=outputs or [],
        )
        await self._send(state, self._event(JobProgressed, state, data))

    async def _send(self, state: _JobState, event: Event) -> None:
        """Queues an intermediate event without waiting for Kafka, so the job
        runs on meanwhile; `_handle` awaits every delivery before the final one."""
        delivery = asyncio.ensure_future(await self._publisher.enqueue(event))
        delivery.add_done_callback(
            lambda done: _log_failed_delivery(done, state.job_id, event.type)
        )
        state.deliveries.append(delivery)

    def _completed(self, state: _JobState) -> _Ending:
        duration_ms = int((self._clock.monotonic() - state.started_at) * 1000)
        data = JobCompletedData(
            attempt=state.attempt,
            worker_id=self._config.worker_id,
            outputs=list(state.stored.values()),
            duration_ms=max(duration_ms, 0),
        )
        return _Ending(self._event(JobCompleted, state, data))

    def _node_failed(self, state: _JobState, failed: ExecutionFailed) -> _Ending:
        kind = failed.exception_type or "Error"
        return _Ending(
            self._event(
                JobFailed,
                state,
                JobFailedData(
                    attempt=state.attempt,
                    worker_id=self._config.worker_id,
                    code=FailureCode.NODE_EXECUTION_ERROR,
                    message=_clip(f"{kind}: {failed.exception_message}"),
                    node_id=failed.node_id,
                    class_type=failed.node_type or state.class_type(failed.node_id),
                    traceback="".join(failed.traceback) or None,
                    retryable=False,
                ),
            )
        )

    def _stopped(self, state: _JobState) -> _Ending:
        if state.stop == StopReason.CANCEL:
            data = JobCancelledData(
                attempt=state.attempt,
                worker_id=self._config.worker_id,
                reason=state.cancel_reason or "cancel requested",
            )
            return _Ending(self._event(JobCancelled, state, data))
        if state.stop == StopReason.TIMEOUT:
            return self._failed(
                state,
                FailureCode.TIMEOUT,
                f"the job did not finish within {state.job.data.timeout_seconds}s "
                "or before its deadline",
                retryable=False,
            )
        return self._failed(
            state,
            FailureCode.INTERNAL_ERROR,
            "ComfyUI interrupted the prompt without a request from this worker",
            retryable=True,
        )

    def _failed(
        self, state: _JobState, code: FailureCode, message: str, retryable: bool
    ) -> _Ending:
        data = JobFailedData(
            attempt=state.attempt,
            worker_id=self._config.worker_id,
            code=code,
            message=_clip(message),
            retryable=retryable,
        )
        return _Ending(self._event(JobFailed, state, data))

    def _event(self, cls: type[_E], state: _JobState, data: Any) -> _E:
        return cls.model_validate(
            {
                "source": self._config.source,
                "subject": state.job_id,
                "tenant_id": state.job.tenant_id,
                "data": data,
            }
        )


def _log_failed_delivery(
    delivery: asyncio.Future[object], job_id: str, event_type: str
) -> None:
    # Also retrieves the error of a delivery nobody awaits (the job was stopped).
    if delivery.cancelled():
        return
    error = delivery.exception()
    if error is not None:
        log.error(
            "executor.event.send_failed",
            job_id=job_id,
            event_type=event_type,
            error=repr(error),
        )


def _result_of(event: Event, duration_s: float) -> JobResult:
    if isinstance(event, JobCompleted):
        return JobResult(Outcome.COMPLETED, duration_s=duration_s)
    if isinstance(event, JobCancelled):
        return JobResult(Outcome.CANCELLED, duration_s=duration_s)
    if isinstance(event, JobFailed):
        return JobResult(Outcome.FAILED, event.data.code, duration_s)
    raise TypeError(f"{type(event).__name__} does not end a job")
