"""Runs one granted attempt: stage → follow the engine → store outputs → report.

The runner keeps the attempt's life and hands each stage to its collaborator:
`staging` builds the prompt, `following` follows the engine's run (storing
outputs through `storing`), `reporting` builds the events. Here the guard
stops the attempt at its deadline, on a cancel, when the lease is lost or when
it produced more outputs than a job may; an engine that ignores the interrupt
is given up on after a grace and restarted; the job's files are cleaned up and
the final event is published.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

import structlog

from comfyserve.contracts.events import Event, FailureCode
from comfyserve.executor.engine import (
    Engine,
    EngineCrashed,
    EngineError,
    EngineRestarted,
    EngineTimeout,
    EngineUnavailable,
    JobFiles,
)
from comfyserve.executor.errors import ExecutorError
from comfyserve.executor.jobs.following import Follower
from comfyserve.executor.jobs.models import Assignment, JobResult
from comfyserve.executor.jobs.ports import Clock, EngineKeeper, FileStore, Publisher
from comfyserve.executor.jobs.reporting import PathScrubber, Reporter, result_of, send
from comfyserve.executor.jobs.staging import stage
from comfyserve.executor.jobs.state import Ending, JobState, StopReason
from comfyserve.executor.jobs.storing import OutputStorer
from comfyserve.executor.telemetry import Metrics, job_context, tracer
from comfyserve.runtime.kafka import EventTooLargeError

log = structlog.get_logger(__name__)

# The engine's own deadline is only a backstop behind the runner's guard.
_ENGINE_DEADLINE_MARGIN_S = 5.0
_SHUTDOWN_INTERRUPT_S = 5.0


class JobRunner:
    """Runs the attempts it is handed, each in its own task: the one ComfyUI
    runs and, with prefetch, one staged behind it in ComfyUI's queue;
    `request_stop` may be called from any task."""

    def __init__(
        self,
        *,
        engine: Engine,
        files: FileStore,
        publisher: Publisher,
        keeper: EngineKeeper,
        clock: Clock,
        worker_id: str,
        source: str,
        progress_interval_s: float,
        interrupt_grace_s: float,
        preview_interval_s: float,
        local_roots: Callable[[], Sequence[Path]] = tuple,
        metrics: Metrics | None = None,
    ) -> None:
        self._engine = engine
        self._files = files
        self._publisher = publisher
        self._keeper = keeper
        self._clock = clock
        self._worker_id = worker_id
        self._source = source
        self._interrupt_grace_s = interrupt_grace_s
        self._local_roots = local_roots
        self._follower = Follower(
            engine=engine,
            storer=OutputStorer(engine, files),
            publisher=publisher,
            clock=clock,
            worker_id=worker_id,
            progress_interval_s=progress_interval_s,
            files=files,
            preview_interval_s=preview_interval_s,
            metrics=metrics,
        )
        # By job and attempt: a superseded attempt may still wind down while
        # the job's next attempt is staged here.
        self._states: dict[tuple[str, int], JobState] = {}

    @property
    def busy(self) -> bool:
        return bool(self._states)

    @property
    def current_job_id(self) -> str | None:
        """The job ComfyUI runs; else the one being staged or queued."""
        states = sorted(
            self._states.values(), key=lambda state: not state.executing.is_set()
        )
        return states[0].job_id if states else None

    def request_stop(
        self, job_id: str, attempt: int | None, reason: StopReason, why: str = ""
    ) -> bool:
        """Stops the attempts of `job_id` this worker holds (that `attempt`,
        when given); any other job is not ours to stop."""
        states = [
            state
            for (held, held_attempt), state in self._states.items()
            if held == job_id and attempt in (None, held_attempt)
        ]
        for state in states:
            log.info("executor.job.stop_requested", job_id=job_id, reason=reason.value)
            state.request_stop(reason, why)
        return bool(states)

    def request_cancel(
        self, job_id: str, reason: str, tenant_id: str | None = None
    ) -> bool:
        """A client's cancel, broadcast to every worker: only the worker running
        that job of that tenant acts."""
        state = next(
            (state for state in self._states.values() if state.job_id == job_id),
            None,
        )
        if state is None:
            return False
        if tenant_id is not None and tenant_id != state.tenant_id:
            log.warning("executor.job.cancel_tenant_mismatch", job_id=job_id)
            return False
        return self.request_stop(job_id, None, StopReason.CANCEL, reason)

    async def handle(
        self,
        assignment: Assignment,
        reported: Callable[[], Awaitable[None]],
        *,
        executing: asyncio.Event | None = None,
        behind: asyncio.Event | None = None,
    ) -> JobResult:
        """Run the attempt; `reported` is called once its final event is in
        Kafka (not at all when the attempt was superseded); `executing` is set
        once ComfyUI runs its prompt. `behind` is set once the job this one
        was staged behind has ended (None: none is ahead of it)."""
        state = JobState(
            assignment, executing=executing or asyncio.Event(), behind=behind
        )
        scrub = PathScrubber(self._local_roots(), assignment.job_id, assignment.attempt)
        reporter = Reporter(
            state, worker_id=self._worker_id, source=self._source, scrub=scrub
        )
        self._states[assignment.job_id, assignment.attempt] = state
        try:
            with (
                structlog.contextvars.bound_contextvars(
                    job_id=assignment.job_id,
                    tenant_id=assignment.tenant_id,
                    attempt=assignment.attempt,
                ),
                tracer.start_as_current_span(
                    "executor.job.run",
                    context=job_context(assignment.traceparent),
                    attributes={
                        "comfyserve.job.id": assignment.job_id,
                        "comfyserve.job.attempt": assignment.attempt,
                        "comfyserve.worker.id": self._worker_id,
                    },
                ),
            ):
                return await self._handle(state, reporter, reported)
        finally:
            self._states.pop((assignment.job_id, assignment.attempt), None)

    async def _handle(
        self,
        state: JobState,
        reporter: Reporter,
        reported: Callable[[], Awaitable[None]],
    ) -> JobResult:
        bound = log.bind(job_id=state.job_id, tenant_id=state.tenant_id)
        state.started_at = self._clock.monotonic()
        state.engine = self._keeper.restart_count
        bound.info("executor.job.started", attempt=state.attempt)
        await send(self._publisher, state, reporter.started())
        ending = await self._attempt(state, reporter)
        if ending.restart is not None:
            await self._keeper.restart(ending.restart, since=state.engine)
        # Intermediate events go first; one that failed is not waited for: the
        # final event carries everything the job needs.
        await asyncio.gather(*state.deliveries, return_exceptions=True)
        final = ending.event
        if state.stop is StopReason.SUPERSEDED:
            # However the run ended (it may have finished or failed after the
            # lease was lost), the attempt is not ours: the job's owner reports.
            final = None
        if final is not None:
            final = await self._publish_final(final, reporter)
            await reported()
        duration_s = self._clock.monotonic() - state.started_at
        result = result_of(final, duration_s)
        bound.info(
            "executor.job.finished",
            outcome=result.outcome.value,
            code=None if result.failure is None else result.failure.value,
            duration_s=round(duration_s, 3),
        )
        return result

    async def _publish_final(self, ending: Event, reporter: Reporter) -> Event:
        with tracer.start_as_current_span(
            "executor.job.publish_final",
            attributes={"comfyserve.event.type": ending.type},
        ):
            try:
                await self._publisher.publish(ending)
            except EventTooLargeError as exc:
                ending = reporter.failed(
                    FailureCode.OUTPUT_LIMIT_EXCEEDED,
                    f"the job's outcome is too large to report: {exc}",
                    retryable=False,
                )
                await self._publisher.publish(ending)
        return ending

    def _deadline(self, state: JobState) -> float:
        """The job's own deadline, a monotonic instant."""
        until_deadline = (state.assignment.deadline - self._clock.now()).total_seconds()
        return self._clock.monotonic() + until_deadline

    async def _attempt(self, state: JobState, reporter: Reporter) -> Ending:
        deadline = self._deadline(state)
        if deadline <= self._clock.monotonic():
            return Ending(
                reporter.failed(
                    FailureCode.TIMEOUT,
                    "the job's deadline passed before it started",
                    retryable=False,
                )
            )
        if state.behind is None:
            timeout_at = self._clock.monotonic() + state.assignment.timeout_seconds
            engine_deadline = min(deadline, timeout_at)
        else:
            # How long it waits in ComfyUI's queue is not known yet.
            engine_deadline = deadline
        work = asyncio.create_task(self._work(state, reporter, engine_deadline))
        guard = asyncio.create_task(self._guard(state, deadline, work))
        try:
            return await work
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if not state.hung or (current is not None and current.cancelling()):
                await self._interrupt_on_shutdown(state)
                raise
            return self._hung(state, reporter)
        finally:
            guard.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await guard
            await self._cleanup(state)

    async def _guard(
        self, state: JobState, deadline: float, work: asyncio.Task[Ending]
    ) -> None:
        """At the timeout, the deadline or on a stop: interrupt, then give up
        after a grace. A staged job's timeout counts from when ComfyUI starts
        running its prompt, or the job ahead of it ended, whichever is first:
        not from its wait in ComfyUI's queue, and not forever behind a wedged
        engine."""
        turn = state.behind is None or await self._until(
            state, deadline, (state.executing, state.behind)
        )
        if turn:
            timeout = float(state.assignment.timeout_seconds)
            await self._until(state, min(deadline, self._clock.monotonic() + timeout))
        state.request_stop(StopReason.TIMEOUT)
        await self._follower.interrupt(state)
        await self._clock.sleep(self._interrupt_grace_s)
        log.warning(
            "executor.job.stop_ignored", job_id=state.job_id, prompt_id=state.prompt_id
        )
        state.hung = True
        work.cancel()

    async def _until(
        self,
        state: JobState,
        instant: float,
        events: tuple[asyncio.Event | None, ...] = (),
    ) -> bool:
        """Waits until `instant`, a stop or one of `events`; whether one of
        `events` came first."""
        timer = asyncio.ensure_future(
            self._clock.sleep(instant - self._clock.monotonic())
        )
        waits = {timer, asyncio.ensure_future(state.stop_requested.wait())}
        waits.update(asyncio.ensure_future(event.wait()) for event in events if event)
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()
        return (
            any(event is not None and event.is_set() for event in events)
            and not state.stop_requested.is_set()
            and self._clock.monotonic() < instant
        )

    async def _interrupt_on_shutdown(self, state: JobState) -> None:
        # The worker is going away: leave no prompt of ours running on ComfyUI.
        if state.prompt_id is None or state.run_ended:
            return
        with contextlib.suppress(EngineError, TimeoutError):
            await asyncio.wait_for(
                self._engine.interrupt(state.prompt_id), _SHUTDOWN_INTERRUPT_S
            )

    def _hung(self, state: JobState, reporter: Reporter) -> Ending:
        restart = None
        if state.prompt_id is not None and not state.run_ended:
            restart = f"prompt {state.prompt_id} ignored an interrupt"
        return Ending(reporter.stopped(), restart)

    async def _cleanup(self, state: JobState) -> None:
        files = JobFiles(inputs=tuple(state.inputs), outputs=tuple(state.refs))
        try:
            await self._engine.cleanup(files)
        except (EngineError, OSError) as exc:
            log.warning(
                "executor.job.cleanup_failed", job_id=state.job_id, error=str(exc)
            )

    async def _work(
        self, state: JobState, reporter: Reporter, deadline: float
    ) -> Ending:
        try:
            prompt = await stage(state, self._engine, self._files)
            if state.stop is not None:
                return Ending(reporter.stopped())
            engine_deadline = (
                deadline + self._interrupt_grace_s + _ENGINE_DEADLINE_MARGIN_S
            )
            return await self._follower.follow(state, reporter, prompt, engine_deadline)
        except ExecutorError as exc:
            return Ending(
                reporter.failed(exc.code, exc.message, retryable=exc.retryable)
            )
        except EngineRestarted as exc:
            # Restarted for another job's sake: that restart already happened.
            return Ending(
                reporter.failed(FailureCode.ENGINE_CRASHED, str(exc), retryable=True)
            )
        except EngineTimeout:
            # Only a backstop: the guard normally gives up on the run first.
            state.request_stop(StopReason.TIMEOUT)
            state.hung = True
            return self._hung(state, reporter)
        except (EngineCrashed, EngineUnavailable) as exc:
            failed = reporter.failed(
                FailureCode.ENGINE_CRASHED, str(exc), retryable=True
            )
            return Ending(failed, restart=str(exc))
        except EngineError as exc:
            return Ending(
                reporter.failed(FailureCode.ENGINE_CRASHED, str(exc), retryable=True)
            )
        except Exception as exc:
            # A bug must still end the attempt, or the job would never end.
            log.exception("executor.job.crashed", job_id=state.job_id)
            return Ending(
                reporter.failed(FailureCode.INTERNAL_ERROR, repr(exc), retryable=True)
            )
