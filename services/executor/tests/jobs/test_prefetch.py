"""Taking the next job while ComfyUI runs the current one (`EXECUTOR_PREFETCH`):
a real dispatch loop, lease keeper and runner against an engine that queues
prompts and runs them one at a time, as ComfyUI does."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry

from comfyserve.contracts.events import Event, JobCancelled, JobCompleted, JobFailed
from comfyserve.executor.engine import (
    CancelOutcome,
    EngineEvent,
    ExecutionInterrupted,
    ExecutionStarted,
    ExecutionSucceeded,
    PromptQueued,
)
from comfyserve.executor.jobs.dispatch import DispatchLoop, LeaseKeeper
from comfyserve.executor.jobs.runner import JobRunner
from comfyserve.executor.telemetry import Metrics

from .conftest import (
    GRACE_S,
    TIMEOUT_S,
    WORKER,
    FakeDispatch,
    FakeEngine,
    Harness,
    eventually,
)


class QueueEngine(FakeEngine):
    """Runs prompts in the order queued, one at a time; each runs until the
    test `finish`es it or it is interrupted (dequeued while it waits)."""

    def __init__(self, h: Harness) -> None:
        super().__init__([], h.clock, h.journal)
        self.queue: list[str] = []
        self.running: str | None = None
        self.started: list[str] = []
        self.dequeued: list[str] = []
        self._ends: dict[str, asyncio.Future[bool]] = {}
        self._turn = asyncio.Condition()

    def finish(self, job_id: str) -> None:
        self._ends[f"p-{job_id}"].set_result(True)

    async def run(
        self,
        prompt: Mapping[str, Any],
        job_id: str,
        deadline: float,
        *,
        partner_key: str | None = None,
    ) -> AsyncGenerator[EngineEvent, None]:
        prompt_id = f"p-{job_id}"
        self.deadlines.append(deadline)
        self._ends[prompt_id] = asyncio.get_running_loop().create_future()
        self.queue.append(prompt_id)
        yield PromptQueued(prompt_id)
        async with self._turn:
            await self._turn.wait_for(
                lambda: (
                    prompt_id in self.dequeued
                    or (self.running is None and self.queue[0] == prompt_id)
                )
            )
            if prompt_id in self.dequeued:
                yield ExecutionInterrupted(prompt_id, None)
                return
            self.queue.remove(prompt_id)
            self.running = prompt_id
        self.started.append(job_id)
        yield ExecutionStarted(prompt_id)
        succeeded = await self._ends[prompt_id]
        async with self._turn:
            self.running = None
            self._turn.notify_all()
        if succeeded:
            yield ExecutionSucceeded(prompt_id, {})
        else:
            yield ExecutionInterrupted(prompt_id, None)

    async def interrupt(self, prompt_id: str) -> CancelOutcome:
        self.interrupts.append(prompt_id)
        if prompt_id == self.running:
            self._ends[prompt_id].set_result(False)
            return CancelOutcome.INTERRUPTED
        if prompt_id in self.queue:
            async with self._turn:
                self.queue.remove(prompt_id)
                self.dequeued.append(prompt_id)
                self._turn.notify_all()
            return CancelOutcome.DEQUEUED
        return CancelOutcome.NOT_FOUND


class Worker:
    def __init__(self, prefetch: int = 1) -> None:
        self.h = Harness()
        self.engine = QueueEngine(self.h)
        self.runner = JobRunner(
            engine=self.engine,
            files=self.h.files,
            publisher=self.h.publisher,
            keeper=self.h.keeper,
            clock=self.h.clock,
            worker_id=WORKER,
            source=f"executor/{WORKER}",
            progress_interval_s=0.5,
            interrupt_grace_s=GRACE_S,
            preview_interval_s=0.0,
        )
        self.dispatch = FakeDispatch()
        self.leases = LeaseKeeper(self.dispatch, self.runner, WORKER, self.h.clock)
        ready = asyncio.Event()
        ready.set()
        self.loop = DispatchLoop(
            dispatch=self.dispatch,
            runner=self.runner,
            leases=self.leases,
            metrics=Metrics(CollectorRegistry()),
            engine_ready=ready.wait,
            worker_id=WORKER,
            pool="gpu-a",
            wait_s=20.0,
            prefetch=prefetch,
        )
        self.task = asyncio.create_task(self.loop.run())

    def grant(self, job_id: str) -> None:
        self.dispatch.grants.put_nowait(
            self.h.assignment(job_id=job_id, attempt=1, graph={})
        )

    def finals(self, kind: type[Event]) -> list[str]:
        return [event.subject for event in self.h.publisher.of(kind)]


async def test_the_next_job_is_taken_and_queued_only_once_comfyui_runs_the_current():
    w = Worker()
    await eventually(lambda: len(w.dispatch.acquires) == 1)
    w.grant("a")
    await eventually(lambda: w.engine.started == ["a"])
    # Taken ahead, staged, and its prompt queued behind the running one.
    await eventually(lambda: len(w.dispatch.acquires) == 2)
    w.grant("b")
    await eventually(lambda: w.engine.queue == ["p-b"])
    assert sorted(w.leases.leases) == [("a", 1), ("b", 1)]
    assert w.runner.current_job_id == "a"
    # At most one ahead: nothing more is asked for while both are held.
    for _ in range(50):
        await asyncio.sleep(0)
    assert len(w.dispatch.acquires) == 2

    w.engine.finish("a")
    await eventually(lambda: w.engine.started == ["a", "b"])
    await eventually(lambda: len(w.dispatch.acquires) == 3)
    w.engine.finish("b")
    await eventually(lambda: w.finals(JobCompleted) == ["a", "b"])
    w.task.cancel()


async def test_without_prefetch_the_next_job_waits_until_the_current_ended():
    w = Worker(prefetch=0)
    await eventually(lambda: len(w.dispatch.acquires) == 1)
    w.grant("a")
    await eventually(lambda: w.engine.started == ["a"])
    for _ in range(50):
        await asyncio.sleep(0)
    assert len(w.dispatch.acquires) == 1

    w.engine.finish("a")
    await eventually(lambda: len(w.dispatch.acquires) == 2)
    w.task.cancel()


async def test_a_cancel_of_the_staged_job_dequeues_it_and_leaves_the_current():
    w = Worker()
    await eventually(lambda: len(w.dispatch.acquires) == 1)
    w.grant("a")
    await eventually(lambda: len(w.dispatch.acquires) == 2)
    w.grant("b")
    await eventually(lambda: w.engine.queue == ["p-b"])

    assert w.runner.request_cancel("b", "changed my mind") is True
    await eventually(lambda: w.finals(JobCancelled) == ["b"])

    assert w.engine.dequeued == ["p-b"]
    assert w.engine.started == ["a"]
    [cancelled] = w.h.publisher.of(JobCancelled)
    assert cancelled.data.reason == "changed my mind"
    w.engine.finish("a")
    await eventually(lambda: w.finals(JobCompleted) == ["a"])
    w.task.cancel()


async def test_a_staged_job_times_out_by_its_own_run_not_its_wait_in_the_queue():
    w = Worker()
    await eventually(lambda: len(w.dispatch.acquires) == 1)
    w.grant("a")
    await eventually(lambda: len(w.dispatch.acquires) == 2)
    w.grant("b")
    await eventually(lambda: w.engine.queue == ["p-b"])

    # "a" runs out its own time; "b" has waited as long but not run yet.
    w.h.clock.advance(TIMEOUT_S)
    await eventually(lambda: w.finals(JobFailed) == ["a"])
    await eventually(lambda: w.engine.started == ["a", "b"])
    assert w.engine.interrupts == ["p-a"]
    w.engine.finish("b")
    await eventually(lambda: w.finals(JobCompleted) == ["b"])
    w.task.cancel()


async def test_a_worker_stopped_with_a_staged_job_reports_nothing_for_it():
    w = Worker()
    await eventually(lambda: len(w.dispatch.acquires) == 1)
    w.grant("a")
    await eventually(lambda: len(w.dispatch.acquires) == 2)
    w.grant("b")
    await eventually(lambda: w.engine.queue == ["p-b"])

    # Past the shutdown grace the loop is cancelled, as when the worker dies.
    w.task.cancel()
    await asyncio.gather(w.task, return_exceptions=True)

    # Neither prompt is left on ComfyUI, neither job is reported, and both
    # leases are left to lapse, which re-queues them for another worker.
    assert sorted(w.engine.interrupts) == ["p-a", "p-b"]
    assert w.h.types == ["executor.job.started", "executor.job.started"]
    assert sorted(w.leases.leases) == [("a", 1), ("b", 1)]
    assert w.runner.busy is False


async def test_stop_taking_lets_the_running_and_the_staged_job_finish():
    w = Worker()
    await eventually(lambda: len(w.dispatch.acquires) == 1)
    w.grant("a")
    await eventually(lambda: len(w.dispatch.acquires) == 2)
    w.grant("b")
    await eventually(lambda: w.engine.queue == ["p-b"])

    w.loop.stop_taking()
    w.engine.finish("a")
    await eventually(lambda: w.engine.started == ["a", "b"])
    w.engine.finish("b")
    await asyncio.wait_for(w.task, 5)

    assert w.finals(JobCompleted) == ["a", "b"]
    assert len(w.dispatch.acquires) == 2
