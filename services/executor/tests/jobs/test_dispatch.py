"""Taking jobs by claim and keeping their leases, against a fake workflow
service and a real runner on fakes."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest
from prometheus_client import CollectorRegistry

from comfyserve.contracts.events import (
    JobCancelled,
    JobCancelRequested,
    JobCancelRequestedData,
    dump_event,
)
from comfyserve.executor.adapters.kafka import Message
from comfyserve.executor.engine import (
    ExecutionInterrupted,
    ExecutionSucceeded,
    PromptQueued,
)
from comfyserve.executor.jobs.dispatch import DispatchLoop, LeaseKeeper, follow_cancels
from comfyserve.executor.jobs.models import LeaseState, Outcome
from comfyserve.executor.telemetry import Metrics

from .conftest import (
    ATTEMPT,
    JOB,
    LEASE_S,
    PROMPT,
    TENANT,
    WORKER,
    AwaitInterrupt,
    FakeDispatch,
    Harness,
    eventually,
)

LEASE = (JOB, ATTEMPT)
POOL = "gpu-a"
WAIT_S = 20.0


async def stopped(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def blocking() -> Harness:
    """A job that runs until it is stopped, then honours the interrupt."""
    return Harness(
        [PromptQueued(PROMPT), AwaitInterrupt(), ExecutionInterrupted(PROMPT, None)]
    )


class World:
    """A runner on fakes, its lease keeper and dispatch loop, one fake
    workflow service behind both."""

    def __init__(self, h: Harness) -> None:
        self.h = h
        self.dispatch = FakeDispatch()
        self.keeper = LeaseKeeper(self.dispatch, h.runner, WORKER, h.clock)
        self.registry = CollectorRegistry()
        self.ready = asyncio.Event()
        self.ready.set()
        self.loop = DispatchLoop(
            dispatch=self.dispatch,
            runner=h.runner,
            leases=self.keeper,
            metrics=Metrics(self.registry),
            engine_ready=self.ready.wait,
            worker_id=WORKER,
            pool=POOL,
            wait_s=WAIT_S,
        )

    def jobs(self, outcome: Outcome) -> float:
        value = self.registry.get_sample_value(
            "executor_jobs_total", {"outcome": outcome.value}
        )
        return value or 0.0

    def busy(self) -> float | None:
        return self.registry.get_sample_value("executor_busy")


async def test_a_held_lease_lets_the_attempt_run_on():
    h = blocking()
    w = World(h)
    w.keeper.hold(h.assignment())
    task = h.start()
    await h.engine.blocked.wait()

    await w.keeper.renew_once()

    assert w.dispatch.renewals == [[LEASE]]
    assert w.keeper.leases == [LEASE]
    assert h.engine.interrupts == []
    assert not task.done()
    h.runner.request_cancel(JOB, "done here")
    await task


async def test_cancel_requested_stops_the_attempt_which_reports_cancelled():
    h = blocking()
    w = World(h)
    w.keeper.hold(h.assignment())
    task = h.start()
    await h.engine.blocked.wait()

    w.dispatch.states[LEASE] = LeaseState.CANCEL_REQUESTED
    await w.keeper.renew_once()
    result = await task

    assert result.outcome == Outcome.CANCELLED
    [cancelled] = h.publisher.of(JobCancelled)
    assert cancelled.data.reason == "cancel requested"
    # Renewed until the workflow service has recorded the cancel.
    assert w.keeper.leases == [LEASE]


@pytest.mark.parametrize("state", [LeaseState.LOST, LeaseState.ENDED])
async def test_a_lease_gone_before_reporting_stops_the_attempt_silently(state):
    h = blocking()
    w = World(h)
    w.keeper.hold(h.assignment())
    task = h.start()
    await h.engine.blocked.wait()

    w.dispatch.states[LEASE] = state
    await w.keeper.renew_once()
    result = await task

    assert result.outcome == Outcome.ABANDONED
    assert h.engine.interrupts == [PROMPT]
    assert h.types == ["executor.job.started"]
    assert w.keeper.leases == []


async def test_after_reporting_the_lease_is_kept_until_the_job_ended():
    h = Harness([PromptQueued(PROMPT), ExecutionSucceeded(PROMPT, {})])
    w = World(h)
    assignment = h.assignment()
    w.keeper.hold(assignment)

    async def reported() -> None:
        w.keeper.reported(JOB, ATTEMPT)

    result = await h.runner.handle(assignment, reported)
    await w.keeper.renew_once()

    assert result.outcome == Outcome.COMPLETED
    # The final event is in Kafka, but the workflow service may not have
    # applied it yet: no other worker may re-run the attempt meanwhile.
    assert w.keeper.leases == [LEASE]
    w.dispatch.states[LEASE] = LeaseState.ENDED
    await w.keeper.renew_once()
    assert w.keeper.leases == []
    await w.keeper.renew_once()
    assert w.dispatch.renewals == [[LEASE], [LEASE]]


async def test_a_lease_lost_after_reporting_is_dropped_without_stopping_anything():
    h = blocking()
    w = World(h)
    # The runner is busy with the next job; the reported one's lease is lost.
    w.keeper.hold(h.assignment(job_id="job-0", attempt=1))
    w.keeper.reported("job-0", 1)
    w.keeper.hold(h.assignment())
    task = h.start()
    await h.engine.blocked.wait()

    w.dispatch.states[("job-0", 1)] = LeaseState.LOST
    await w.keeper.renew_once()

    assert w.keeper.leases == [LEASE]
    assert h.engine.interrupts == []
    h.runner.request_cancel(JOB, "done here")
    await task


async def test_a_failed_renewal_is_retried_at_the_next_interval():
    h = blocking()
    w = World(h)
    w.keeper.hold(h.assignment())
    w.dispatch.unavailable = 1
    renewing = asyncio.create_task(w.keeper.run())
    await h.clock.sleeping(1)

    h.clock.advance(LEASE_S / 3)
    await h.clock.sleeping(1)
    assert w.dispatch.renewals == [[LEASE]]
    assert w.keeper.leases == [LEASE]

    h.clock.advance(LEASE_S / 3)
    await h.clock.sleeping(1)
    assert w.dispatch.renewals == [[LEASE], [LEASE]]
    await stopped(renewing)


async def test_renewals_come_every_third_of_the_lease_and_idle_without_one():
    h = blocking()
    w = World(h)
    renewing = asyncio.create_task(w.keeper.run())
    await h.clock.sleeping(1)

    h.clock.advance(1.0)
    await h.clock.sleeping(1)
    assert w.dispatch.renewals == []

    w.keeper.hold(h.assignment())
    h.clock.advance(1.0)
    await h.clock.sleeping(1)
    assert len(w.dispatch.renewals) == 1
    h.clock.advance(LEASE_S / 3 - 1)
    await h.clock.sleeping(1)
    assert len(w.dispatch.renewals) == 1
    h.clock.advance(1)
    await h.clock.sleeping(1)
    assert len(w.dispatch.renewals) == 2
    await stopped(renewing)


async def test_the_loop_runs_each_granted_job_and_keeps_its_lease():
    h = Harness([PromptQueued(PROMPT), ExecutionSucceeded(PROMPT, {})])
    w = World(h)
    running = asyncio.create_task(w.loop.run())

    # A long-poll that found no job, then a grant.
    w.dispatch.grants.put_nowait(None)
    w.dispatch.grants.put_nowait(h.assignment())
    await eventually(lambda: len(w.dispatch.acquires) == 3)

    assert w.dispatch.acquires == [(WORKER, POOL, WAIT_S)] * 3
    assert w.jobs(Outcome.COMPLETED) == 1
    assert w.busy() == 0
    assert h.types[-1] == "executor.job.completed"
    assert w.keeper.leases == [LEASE]
    w.dispatch.states[LEASE] = LeaseState.ENDED
    await w.keeper.renew_once()
    assert w.keeper.leases == []

    w.loop.stop_taking()
    w.dispatch.grants.put_nowait(None)
    await asyncio.wait_for(running, 5)


async def test_the_loop_releases_the_lease_of_an_abandoned_attempt():
    h = blocking()
    w = World(h)
    running = asyncio.create_task(w.loop.run())
    w.dispatch.grants.put_nowait(h.assignment())
    await h.engine.blocked.wait()
    assert w.busy() == 1

    w.dispatch.states[LEASE] = LeaseState.LOST
    await w.keeper.renew_once()
    await eventually(lambda: w.jobs(Outcome.ABANDONED) == 1)

    assert w.keeper.leases == []
    assert w.busy() == 0
    w.loop.stop_taking()
    w.dispatch.grants.put_nowait(None)
    await asyncio.wait_for(running, 5)


async def test_a_job_granted_while_stopping_is_left_for_another_worker():
    h = blocking()
    w = World(h)
    running = asyncio.create_task(w.loop.run())
    await eventually(lambda: w.dispatch.acquires)

    w.loop.stop_taking()
    w.dispatch.grants.put_nowait(h.assignment())
    await asyncio.wait_for(running, 5)

    assert h.engine.prompts == []
    assert h.publisher.events == []
    assert w.keeper.leases == []


async def test_stop_taking_lets_the_current_job_finish_and_takes_no_more():
    h = blocking()
    w = World(h)
    running = asyncio.create_task(w.loop.run())
    w.dispatch.grants.put_nowait(h.assignment())
    await h.engine.blocked.wait()

    w.loop.stop_taking()
    assert not running.done()
    h.runner.request_cancel(JOB, "user asked")
    await asyncio.wait_for(running, 5)

    assert w.jobs(Outcome.CANCELLED) == 1
    assert len(w.dispatch.acquires) == 1


async def test_no_job_is_asked_for_while_the_engine_is_not_ready():
    h = blocking()
    w = World(h)
    w.ready.clear()
    running = asyncio.create_task(w.loop.run())
    for _ in range(20):
        await asyncio.sleep(0)
    assert w.dispatch.acquires == []

    w.ready.set()
    await eventually(lambda: w.dispatch.acquires)
    w.loop.stop_taking()
    w.dispatch.grants.put_nowait(None)
    await asyncio.wait_for(running, 5)


def cancel_message(offset: int, job_id: str, tenant_id: str, reason: str) -> Message:
    event = JobCancelRequested(
        source="workflow",
        subject=job_id,
        tenant_id=tenant_id,
        data=JobCancelRequestedData(reason=reason),
    )
    return Message("cancels", 0, offset, job_id.encode(), dump_event(event), ())


async def test_only_a_readable_cancel_of_the_current_job_and_tenant_stops_it():
    h = blocking()
    task = h.start()
    await h.engine.blocked.wait()

    async def messages() -> AsyncIterator[Message]:
        yield Message("cancels", 0, 0, None, b"not json", ())
        yield Message("cancels", 0, 1, None, None, ())
        yield cancel_message(2, "job-9", TENANT, "another job")
        yield cancel_message(3, JOB, "tenant-b", "another tenant")
        assert h.engine.interrupts == []
        yield cancel_message(4, JOB, TENANT, "user asked")

    await follow_cancels(messages(), h.runner)
    result = await task

    assert result.outcome == Outcome.CANCELLED
    [cancelled] = h.publisher.of(JobCancelled)
    assert cancelled.data.reason == "user asked"
