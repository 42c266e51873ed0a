"""How this worker takes jobs: it asks the workflow service for the next one
(AcquireJob), runs it, and keeps the attempt's lease until the job's final
state is recorded; and every cancel broadcast reaches it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

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
    """Acquires one job at a time and runs it under its lease."""

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
    ) -> None:
        self._dispatch = dispatch
        self._runner = runner
        self._leases = leases
        self._metrics = metrics
        self._engine_ready = engine_ready
        self._worker_id = worker_id
        self._pool = pool
        self._wait_s = wait_s
        self._stopping = asyncio.Event()

    def stop_taking(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        while not self._stopping.is_set():
            await self._engine_ready()
            assignment = await self._dispatch.acquire(
                self._worker_id, self._pool, self._wait_s
            )
            if assignment is None:
                continue
            if self._stopping.is_set():
                # Granted while shutting down: the lease lapses and the job is
                # re-queued for another worker.
                log.info("executor.job.left_on_shutdown", job_id=assignment.job_id)
                return
            await self.process(assignment)

    async def process(self, assignment: Assignment) -> None:
        job_id, attempt = assignment.job_id, assignment.attempt
        self._leases.hold(assignment)

        async def reported() -> None:
            self._leases.reported(job_id, attempt)

        self._metrics.busy.set(1)
        try:
            result = await self._runner.handle(assignment, reported)
        finally:
            self._metrics.busy.set(0)
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
