"""How this worker takes jobs: it asks the workflow service for the next one
(AcquireJob), runs it, and keeps the attempt's lease until the job's final
state is recorded; and every cancel broadcast reaches it.

With prefetch the next job is taken while the current one runs: its inputs are
staged and its prompt queued behind the current one, so ComfyUI's own queue
never runs empty between jobs. It is taken only once ComfyUI runs the current
job, and at most `prefetch` ahead: a job held ahead is a job an idle worker of
the pool cannot take, so a worker holds one ahead only when it is about to be
free for it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import structlog
from pydantic import ValidationError

from comfyserve.contracts.events import JobCancelRequested, parse_event
from comfyserve.executor.adapters.kafka import Message
from comfyserve.executor.errors import DispatchUnavailable
from comfyserve.executor.jobs.models import Assignment, LeaseState, Outcome
from comfyserve.executor.jobs.ports import Clock, Dispatch
from comfyserve.executor.jobs.runner import JobRunner
from comfyserve.executor.jobs.state import StopReason
from comfyserve.executor.telemetry import Metrics

log = structlog.get_logger(__name__)

Lease = tuple[str, int]


@dataclass(slots=True)
class _Running:
    # Set once ComfyUI runs the job's prompt, and once the job ended.
    executing: asyncio.Event
    ended: asyncio.Event
    task: asyncio.Task[None] = field(init=False)


@dataclass
class _Held:
    lease_seconds: float
    reported: bool = False


class LeaseKeeper:
    """Renews the leases this worker holds, from the grant until the job's
    final state is recorded, and stops an attempt whose lease is lost.

    Liveness goes straight to the workflow service over gRPC, never through
    Kafka, so broker outages and consumer lag cannot make a live worker look
    dead. A lease stays held after the final event is in Kafka, until the
    workflow service has applied it: the attempt is never re-run meanwhile.
    """

    def __init__(
        self,
        dispatch: Dispatch,
        runner: JobRunner,
        worker_id: str,
        clock: Clock,
        *,
        idle_interval_s: float = 1.0,
    ) -> None:
        self._dispatch = dispatch
        self._runner = runner
        self._worker_id = worker_id
        self._clock = clock
        self._idle_interval_s = idle_interval_s
        self._held: dict[Lease, _Held] = {}

    def hold(self, assignment: Assignment) -> None:
        self._held[(assignment.job_id, assignment.attempt)] = _Held(
            assignment.lease_seconds
        )

    def reported(self, job_id: str, attempt: int) -> None:
        held = self._held.get((job_id, attempt))
        if held is not None:
            held.reported = True

    def release(self, job_id: str, attempt: int) -> None:
        self._held.pop((job_id, attempt), None)

    @property
    def leases(self) -> list[Lease]:
        return list(self._held)

    def _interval(self) -> float:
        if not self._held:
            return self._idle_interval_s
        return min(held.lease_seconds for held in self._held.values()) / 3

    async def run(self) -> None:
        while True:
            await self._clock.sleep(self._interval())
            await self.renew_once()

    async def renew_once(self) -> None:
        leases = self.leases
        if not leases:
            return
        try:
            statuses = await self._dispatch.renew(self._worker_id, leases)
        except DispatchUnavailable as exc:
            # The lease outlives a few failed renewals; the next one may pass.
            log.warning("executor.lease.renew_failed", error=str(exc))
            return
        for status in statuses:
            self._apply(status.job_id, status.attempt, status.state)

    def _apply(self, job_id: str, attempt: int, state: LeaseState) -> None:
        held = self._held.get((job_id, attempt))
        if held is None:
            return
        if state is LeaseState.CANCEL_REQUESTED:
            self._runner.request_stop(
                job_id, attempt, StopReason.CANCEL, "cancel requested"
            )
        elif state in (LeaseState.LOST, LeaseState.ENDED):
            if not held.reported:
                log.warning(
                    "executor.lease.lost", job_id=job_id, attempt=attempt, state=state
                )
                self._runner.request_stop(job_id, attempt, StopReason.SUPERSEDED)
            self.release(job_id, attempt)


class DispatchLoop:
    """Acquires jobs and runs each under its lease: one at a time, or with
    `prefetch` more staged behind the one ComfyUI runs."""

    def __init__(
        self,
        *,
        dispatch: Dispatch,
        runner: JobRunner,
        leases: LeaseKeeper,
        metrics: Metrics,
        engine_ready: Callable[[], Awaitable[None]],
        worker_id: str,
        pool: str,
        wait_s: float,
        prefetch: int = 0,
    ) -> None:
        self._dispatch = dispatch
        self._runner = runner
        self._leases = leases
        self._metrics = metrics
        self._engine_ready = engine_ready
        self._worker_id = worker_id
        self._pool = pool
        self._wait_s = wait_s
        self._prefetch = prefetch
        self._stopping = asyncio.Event()
        self._active: dict[Lease, _Running] = {}

    def stop_taking(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        """Takes jobs until `stop_taking`, then lets the held ones finish; a
        cancel of this task cancels them too (their leases lapse)."""
        try:
            while not self._stopping.is_set():
                await self._room_for_next()
                if self._stopping.is_set():
                    break
                await self._engine_ready()
                assignment = await self._dispatch.acquire(
                    self._worker_id, self._pool, self._wait_s
                )
                if assignment is None:
                    continue
                if self._stopping.is_set():
                    # Granted while shutting down: the lease lapses and the job
                    # is re-queued for another worker.
                    log.info("executor.job.left_on_shutdown", job_id=assignment.job_id)
                    break
                self._start(assignment)
            tasks = [job.task for job in self._active.values()]
            if tasks:
                await asyncio.gather(*tasks)
        finally:
            tasks = [job.task for job in self._active.values()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    def _start(self, assignment: Assignment) -> None:
        if self._active:
            log.info("executor.job.staged", job_id=assignment.job_id)
        ahead = [job.ended for job in self._active.values()]
        running = _Running(asyncio.Event(), asyncio.Event())
        running.task = asyncio.create_task(
            self._process_held(assignment, running, ahead[-1] if ahead else None),
            name=f"job-{assignment.job_id}",
        )
        self._active[assignment.job_id, assignment.attempt] = running

    async def _process_held(
        self, assignment: Assignment, running: _Running, behind: asyncio.Event | None
    ) -> None:
        try:
            await self.process(assignment, running.executing, behind)
        finally:
            running.ended.set()

    def _reap(self) -> None:
        for lease, held in list(self._active.items()):
            if held.task.done():
                del self._active[lease]
                # A crashed job task must stop the worker, as the loop's would.
                held.task.result()

    async def _room_for_next(self) -> None:
        """Returns once the next job may be taken: none held, or fewer than
        `prefetch` ahead of the one ComfyUI runs and every held one running
        (a staged job runs once the one before it ends)."""
        while True:
            self._reap()
            held = list(self._active.values())
            if not held or (
                len(held) <= self._prefetch
                and all(job.executing.is_set() for job in held)
            ):
                return
            waits: set[asyncio.Future[Any]] = {job.task for job in held}
            waits.add(asyncio.ensure_future(self._stopping.wait()))
            waits.update(
                asyncio.ensure_future(job.executing.wait())
                for job in held
                if not job.executing.is_set()
            )
            try:
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for wait in waits - {job.task for job in held}:
                    wait.cancel()
            if self._stopping.is_set():
                return

    async def process(
        self,
        assignment: Assignment,
        executing: asyncio.Event | None = None,
        behind: asyncio.Event | None = None,
    ) -> None:
        job_id, attempt = assignment.job_id, assignment.attempt
        self._leases.hold(assignment)

        async def reported() -> None:
            self._leases.reported(job_id, attempt)

        self._metrics.busy.set(1)
        try:
            result = await self._runner.handle(
                assignment, reported, executing=executing, behind=behind
            )
        finally:
            self._metrics.busy.set(1 if self._runner.busy else 0)
        self._metrics.record(result)
        if result.outcome is Outcome.ABANDONED:
            self._leases.release(job_id, attempt)


async def follow_cancels(messages: AsyncIterator[Message], runner: JobRunner) -> None:
    """Every worker sees every cancel request; only the current job's is acted on."""
    async for message in messages:
        try:
            event = parse_event(message.value or b"")
        except ValidationError:
            log.warning("executor.cancel.unreadable", offset=message.offset)
            continue
        if isinstance(event, JobCancelRequested):
            runner.request_cancel(event.subject, event.data.reason, event.tenant_id)
