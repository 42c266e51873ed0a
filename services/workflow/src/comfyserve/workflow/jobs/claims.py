"""Dispatch by claim: executors acquire pending jobs, hold them under leases
that they renew, and lose them when they stop renewing. No transport types.

The claim in Postgres is the only authority on who runs an attempt: each grant
is one conditional row update, so an attempt goes to exactly one worker; the
lease fences it, so a worker whose lease lapsed (and whose job was re-queued
or taken over) learns it at its next renewal and stops.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any
from uuid import UUID

import structlog
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from comfyserve.contracts.events import DEFAULT_POOL
from comfyserve.runtime.notifications import notify
from comfyserve.workflow.adapters.partner_keys import PartnerKeys
from comfyserve.workflow.db import JOBS_CHANNEL
from comfyserve.workflow.errors import InvalidArgumentError, JobNotFoundError
from comfyserve.workflow.jobs import dispatch_repository, events, repository
from comfyserve.workflow.jobs.models import JobRecord, JobStatus
from comfyserve.workflow.jobs.reads import parse_job_id, require_tenant
from comfyserve.workflow.jobs.state import exhaust
from comfyserve.workflow.jobs.transitions import persist_transition
from comfyserve.workflow.jobs.watch import ChannelListener
from comfyserve.workflow.settings import Settings
from comfyserve.workflow.telemetry import Metrics

log = structlog.get_logger(__name__)

Clock = Callable[[], datetime]


class ClaimRefusal(StrEnum):
    JOB_COMPLETED = "job_completed"
    JOB_FAILED = "job_failed"
    JOB_CANCELLED = "job_cancelled"
    CANCEL_REQUESTED = "cancel_requested"
    RUNNING_ON_LIVE_WORKER = "running_on_live_worker"
    ATTEMPTS_EXHAUSTED = "attempts_exhausted"
    # The tenant runs as many jobs as its quota allows; claim again later.
    TENANT_AT_LIMIT = "tenant_at_limit"


class LeaseState(StrEnum):
    HELD = "held"
    CANCEL_REQUESTED = "cancel_requested"
    LOST = "lost"
    ENDED = "ended"


_ENDED = {
    JobStatus.COMPLETED: ClaimRefusal.JOB_COMPLETED,
    JobStatus.FAILED: ClaimRefusal.JOB_FAILED,
    JobStatus.CANCELLED: ClaimRefusal.JOB_CANCELLED,
}


@dataclass(frozen=True, slots=True)
class Assignment:
    """A granted attempt and what the executor needs to run it."""

    job: JobRecord
    graph: dict[str, Any]
    lease_seconds: float
    # Secret: for the prompt's `extra_data` only (ADR 0006).
    partner_key: str | None = field(default=None, repr=False)

    @property
    def attempt(self) -> int:
        return self.job.attempt


@dataclass(frozen=True, slots=True)
class ClaimOutcome:
    job: JobRecord
    assignment: Assignment | None = None
    reason: ClaimRefusal | None = None

    @property
    def granted(self) -> bool:
        return self.assignment is not None


@dataclass(frozen=True, slots=True)
class LeaseStatus:
    job_id: str
    attempt: int
    state: LeaseState


@dataclass(frozen=True, slots=True)
class Renewal:
    leases: list[LeaseStatus] = field(default_factory=list)
    lease_seconds: float = 0.0


class ClaimService:
    def __init__(
        self,
        *,
        engine: AsyncEngine,
        settings: Settings,
        queue: ChannelListener,
        partner_keys: PartnerKeys,
        metrics: Metrics,
        source: str,
        clock: Clock,
    ) -> None:
        self._engine = engine
        self._settings = settings
        self._queue = queue
        self._partner_keys = partner_keys
        self._metrics = metrics
        self._source = source
        self._clock = clock

    @property
    def _lease(self) -> timedelta:
        return timedelta(seconds=self._settings.lease_seconds)

    async def acquire(
        self, worker_id: str, pool: str, wait_seconds: float
    ) -> Assignment | None:
        """The next job of `pool`, waiting up to `wait_seconds` for one to be
        queued; None when none came. Waiters are woken by `NOTIFY` on the queue
        channel, never by polling."""
        _require_worker(worker_id)
        pool = pool or DEFAULT_POOL
        if wait_seconds < 0:
            raise InvalidArgumentError("wait_seconds", "must not be negative")
        wait = min(wait_seconds, self._settings.acquire_max_wait_seconds)
        until = time.monotonic() + wait
        # Subscribe before the first try, so a job queued in between wakes us.
        with self._queue.subscribe(pool) as queued:
            while True:
                queued.clear()
                assignment = await self._claim_next(worker_id, pool)
                if assignment is not None:
                    return assignment
                remaining = until - time.monotonic()
                if remaining <= 0:
                    return None
                try:
                    await asyncio.wait_for(queued.wait(), remaining)
                except TimeoutError:
                    return None

    async def _claim_next(self, worker_id: str, pool: str) -> Assignment | None:
        now = self._clock()
        async with self._engine.connect() as conn, conn.begin():
            job = await dispatch_repository.claim_next(
                conn,
                pool=pool,
                worker_id=worker_id,
                now=now,
                lease_until=now + self._lease,
                max_attempts=self._settings.max_attempts,
                default_max_running=self._settings.tenant_max_running,
            )
            if job is None:
                return None
            # Inside the grant: a key Redis cannot answer undoes the grant.
            assignment = await self._assignment(job)
        self._granted(job, worker_id)
        return assignment

    async def claim(self, tenant_id: str, job_id: str, worker_id: str) -> ClaimOutcome:
        """Claim one named job: granted when it is pending or its lease lapsed."""
        require_tenant(tenant_id)
        _require_worker(worker_id)
        job_uuid = parse_job_id(job_id)
        now = self._clock()
        max_attempts = self._settings.max_attempts
        async with self._engine.connect() as conn, conn.begin():
            job = await repository.get_job(
                conn, job_uuid, tenant_id=tenant_id, for_update=True
            )
            if job is None:
                raise JobNotFoundError(job_id)
            if not dispatch_repository.claimable(job, now, max_attempts):
                outcome = await self._refuse(conn, job, now)
            elif await dispatch_repository.tenant_at_limit(
                conn, job.tenant_id, self._settings.tenant_max_running
            ):
                outcome = ClaimOutcome(job=job, reason=ClaimRefusal.TENANT_AT_LIMIT)
            else:
                granted = await dispatch_repository.grant(
                    conn,
                    job,
                    worker_id=worker_id,
                    now=now,
                    lease_until=now + self._lease,
                )
                assignment = await self._assignment(granted)
                await notify(conn, JOBS_CHANNEL, str(granted.id))
                outcome = ClaimOutcome(job=granted, assignment=assignment)
        if outcome.granted:
            self._granted(outcome.job, worker_id)
        elif outcome.reason is ClaimRefusal.ATTEMPTS_EXHAUSTED:
            self._metrics.job_transitions.labels(JobStatus.FAILED.value).inc()
            self._metrics.job_ended(outcome.job)
        return outcome

    async def _refuse(
        self, conn: AsyncConnection, job: JobRecord, now: datetime
    ) -> ClaimOutcome:
        if job.status.is_final:
            return ClaimOutcome(job=job, reason=_ENDED[job.status])
        if job.cancel_requested:
            return ClaimOutcome(job=job, reason=ClaimRefusal.CANCEL_REQUESTED)
        if job.status is JobStatus.RUNNING and (
            job.lease_expires_at is not None and job.lease_expires_at >= now
        ):
            return ClaimOutcome(job=job, reason=ClaimRefusal.RUNNING_ON_LIVE_WORKER)
        # Free to run but out of attempts: the job ends here.
        failed = exhaust(job, now, max_attempts=self._settings.max_attempts)
        await persist_transition(
            conn, job.status, failed, now=now, source=self._source, cancel_reason=""
        )
        return ClaimOutcome(job=failed.job, reason=ClaimRefusal.ATTEMPTS_EXHAUSTED)

    async def renew(self, worker_id: str, leases: Sequence[tuple[str, int]]) -> Renewal:
        """Extend the leases `worker_id` holds; each lease's state, in order."""
        _require_worker(worker_id)
        parsed = [(_lease_job_id(job_id), attempt) for job_id, attempt in leases]
        now = self._clock()
        async with self._engine.connect() as conn, conn.begin():
            renewed = await dispatch_repository.renew_leases(
                conn, worker_id=worker_id, leases=parsed, until=now + self._lease
            )
            others = [job_id for job_id, _ in parsed if job_id not in renewed]
            rows = {
                row.job_id: row
                for row in (
                    await dispatch_repository.lease_rows(conn, others) if others else []
                )
            }
        states = []
        for (job_id, attempt), (raw_id, _) in zip(parsed, leases, strict=True):
            if job_id in renewed:
                state = (
                    LeaseState.CANCEL_REQUESTED if renewed[job_id] else LeaseState.HELD
                )
            else:
                row = rows.get(job_id)
                state = (
                    LeaseState.ENDED
                    if row is None or row.status.is_final
                    else LeaseState.LOST
                )
                log.info(
                    "workflow.lease.not_renewed",
                    job_id=raw_id,
                    attempt=attempt,
                    worker_id=worker_id,
                    state=state.value,
                )
            states.append(LeaseStatus(job_id=raw_id, attempt=attempt, state=state))
        return Renewal(leases=states, lease_seconds=self._settings.lease_seconds)

    async def _assignment(self, job: JobRecord) -> Assignment:
        return Assignment(
            job=job,
            graph=events.resolved_workflow(job),
            lease_seconds=self._settings.lease_seconds,
            partner_key=await self._partner_keys.get(str(job.id)),
        )

    def _granted(self, job: JobRecord, worker_id: str) -> None:
        self._metrics.job_transitions.labels(JobStatus.RUNNING.value).inc()
        log.info(
            "workflow.job.claimed",
            job_id=str(job.id),
            worker_id=worker_id,
            attempt=job.attempt,
            pool=job.pool,
        )


def _require_worker(worker_id: str) -> None:
    if not worker_id:
        raise InvalidArgumentError("worker_id", "is required")


def _lease_job_id(job_id: str) -> UUID:
    try:
        return UUID(job_id)
    except ValueError:
        raise InvalidArgumentError("leases", f"{job_id!r} is not a job id") from None
