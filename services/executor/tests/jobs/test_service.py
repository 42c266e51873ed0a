"""The job runner against hand-written fakes of the engine, Kafka, gRPC and time."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from PIL import Image

from comfyserve.contracts.events import (
    Event,
    FailureCode,
    InputFile,
    JobCancelled,
    JobCompleted,
    JobFailed,
    JobProgressed,
    JobStarted,
    JobSubmitted,
    JobSubmittedData,
    OutputFile,
    Priority,
)
from comfyserve.executor.engine import (
    CancelOutcome,
    EngineCrashed,
    EngineEvent,
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
from comfyserve.executor.errors import InputUnavailable, StorageFailed
from comfyserve.executor.jobs.models import Claim, NewOutput, Outcome
from comfyserve.executor.jobs.service import (
    RUN_MARK_INPUT,
    JobRunner,
    RunnerConfig,
    force_fresh_outputs,
)

WORKER = "worker-1"
GRACE_S = 10.0
TIMEOUT_S = 60
PROMPT = "prompt-1"
GRAPH = {
    "1": {"class_type": "LoadImage", "inputs": {"image": "in.png"}},
    "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
    "3": {
        "class_type": "SaveImage",
        "inputs": {"images": ["2", 0], "filename_prefix": "x"},
    },
}


def png(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (1, 2, 3)).save(buffer, format="PNG")
    return buffer.getvalue()


def ref(node_id: str = "3", index: int = 0, folder: str = "output") -> OutputRef:
    return OutputRef(
        node_id=node_id,
        index=index,
        filename=f"x_{index:05}_.png",
        subfolder="",
        folder_type=folder,
        media_key="images",
        kind=OutputKind.IMAGE,
        content_type="image/png",
    )


class ManualClock:
    """Time moves only when a test advances it."""

    def __init__(self) -> None:
        self.t = 1000.0
        self.wall = datetime(2026, 1, 1, tzinfo=UTC)
        self._sleepers: list[tuple[float, asyncio.Future[None]]] = []
        self._changed = asyncio.Condition()

    def monotonic(self) -> float:
        return self.t

    def now(self) -> datetime:
        return self.wall + timedelta(seconds=self.t - 1000.0)

    async def sleep(self, seconds: float) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._sleepers.append((self.t + seconds, future))
        async with self._changed:
            self._changed.notify_all()
        await future

    async def sleeping(self, count: int) -> None:
        """Returns once `count` tasks wait on this clock."""
        async with asyncio.timeout(5), self._changed:
            await self._changed.wait_for(lambda: self.sleepers == count)

    @property
    def sleepers(self) -> int:
        return sum(1 for _, future in self._sleepers if not future.done())

    def advance(self, seconds: float) -> None:
        self.t += seconds
        for due, future in self._sleepers:
            if due <= self.t and not future.done():
                future.set_result(None)


@dataclass(frozen=True)
class Advance:
    """Script step: move the clock before the next event."""

    seconds: float


@dataclass(frozen=True)
class AwaitInterrupt:
    """Script step: block until interrupted; `honour=False` keeps blocking."""

    honour: bool = True


Step = EngineEvent | Advance | AwaitInterrupt | Exception


class FakeEngine:
    def __init__(self, script: list[Step], clock: ManualClock, journal: list[str]):
        self.script = script
        self.clock = clock
        self.journal = journal
        self.uploads: dict[str, bytes] = {}
        self.prompts: list[dict[str, Any]] = []
        self.interrupts: list[str] = []
        self.cleaned: list[JobFiles] = []
        self.outputs: dict[tuple[str, int], bytes] = {}
        self.blocked = asyncio.Event()
        self._interrupted = asyncio.Event()

    @property
    def base_url(self) -> str:
        return "http://fake"

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def restart(self) -> None: ...

    async def ready(self) -> bool:
        return True

    async def object_info(self) -> dict[str, Any]:
        return {}

    async def system_stats(self) -> dict[str, Any]:
        return {}

    async def upload_input(self, data: bytes, filename: str, subfolder: str) -> str:
        name = f"{subfolder}/{filename}"
        self.uploads[name] = data
        return name

    async def run(
        self, prompt: dict[str, Any], job_id: str, deadline: float
    ) -> AsyncIterator[EngineEvent]:
        self.prompts.append(prompt)
        for step in self.script:
            if isinstance(step, Advance):
                self.clock.advance(step.seconds)
            elif isinstance(step, AwaitInterrupt):
                self.blocked.set()
                await self._interrupted.wait()
                if not step.honour:
                    await asyncio.Event().wait()
            elif isinstance(step, Exception):
                raise step
            else:
                self.journal.append(f"engine:{type(step).__name__}")
                yield step

    async def interrupt(self, prompt_id: str) -> CancelOutcome:
        self.interrupts.append(prompt_id)
        self._interrupted.set()
        return CancelOutcome.INTERRUPTED

    async def fetch_output(self, ref: OutputRef) -> bytes:
        return self.outputs.get((ref.node_id, ref.index), png(4, 3))

    async def cleanup(self, files: JobFiles) -> None:
        self.cleaned.append(files)


class DeliveryFailed(Exception):
    pass


class FakePublisher:
    """Acknowledges queued events at once unless `held`, which keeps their
    deliveries open for the test to settle."""

    def __init__(self, journal: list[str]) -> None:
        self.events: list[Event] = []
        self.journal = journal
        self.held = False
        self.open: list[asyncio.Future[object]] = []
        self.queued = asyncio.Event()

    async def publish(self, event: Event) -> None:
        self.journal.append(f"publish:{event.type}")
        self.events.append(event)

    async def enqueue(self, event: Event) -> Awaitable[object]:
        self.journal.append(f"enqueue:{event.type}")
        self.events.append(event)
        delivery: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        if self.held:
            self.open.append(delivery)
        else:
            delivery.set_result(None)
        self.queued.set()
        return delivery

    def of(self, cls: type[Event]) -> list[Any]:
        return [event for event in self.events if isinstance(event, cls)]


class FakeClaims:
    def __init__(self, claim: Claim) -> None:
        self.answer = claim
        self.calls: list[tuple[str, str, str]] = []

    async def claim(self, tenant_id: str, job_id: str, worker_id: str) -> Claim:
        self.calls.append((tenant_id, job_id, worker_id))
        return self.answer


class FakeFiles:
    def __init__(self, journal: list[str]) -> None:
        self.inputs: dict[str, bytes] = {}
        self.stored: list[NewOutput] = []
        self.fail_outputs = False
        self.journal = journal

    async def fetch_input(self, tenant_id: str, file: InputFile) -> bytes:
        if file.file_id not in self.inputs:
            raise InputUnavailable(f"file {file.file_id} not found")
        return self.inputs[file.file_id]

    async def store_output(self, tenant_id: str, output: NewOutput) -> OutputFile:
        if self.fail_outputs:
            raise StorageFailed("object store unreachable")
        self.journal.append(f"store:{output.node_id}/{output.index}")
        self.stored.append(output)
        return OutputFile(
            file_id=f"file-{output.node_id}-{output.index}",
            node_id=output.node_id,
            index=output.index,
            filename=output.filename,
            kind=output.kind,
            content_type=output.content_type,
            size=output.size,
            sha256=output.sha256,
            bucket="b",
            key=f"outputs/{tenant_id}/{output.job_id}/{output.node_id}/{output.index}",
            width=output.width,
            height=output.height,
        )


class FakeKeeper:
    def __init__(self) -> None:
        self.restarts: list[str] = []

    async def restart(self, reason: str) -> None:
        self.restarts.append(reason)


class Harness:
    def __init__(self, script: list[Step], claim: Claim | None = None) -> None:
        self.journal: list[str] = []
        self.clock = ManualClock()
        self.engine = FakeEngine(script, self.clock, self.journal)
        self.publisher = FakePublisher(self.journal)
        self.claims = FakeClaims(claim or Claim(granted=True, attempt=2))
        self.files = FakeFiles(self.journal)
        self.keeper = FakeKeeper()
        self.runner = JobRunner(
            engine=self.engine,
            claims=self.claims,
            files=self.files,
            publisher=self.publisher,
            keeper=self.keeper,
            clock=self.clock,
            config=RunnerConfig(
                worker_id=WORKER,
                source=f"executor/{WORKER}",
                progress_interval_s=0.5,
                interrupt_grace_s=GRACE_S,
            ),
        )

    def job(self, inputs: list[InputFile] | None = None, **data: Any) -> JobSubmitted:
        fields: dict[str, Any] = {
            "workflow": GRAPH,
            "inputs": inputs or [],
            "priority": Priority.NORMAL,
            "timeout_seconds": TIMEOUT_S,
            "deadline": self.clock.now() + timedelta(hours=1),
            **data,
        }
        return JobSubmitted(
            source="workflow",
            subject="job-1",
            tenant_id="tenant-a",
            data=JobSubmittedData(**fields),
        )

    @property
    def types(self) -> list[str]:
        return [event.type for event in self.publisher.events]


def input_file() -> InputFile:
    return InputFile(
        file_id="in-1",
        node_id="1",
        input_name="image",
        filename="in.png",
        bucket="b",
        key="inputs/tenant-a/in-1",
        content_type="image/png",
        size=3,
    )


async def test_success_stages_inputs_runs_stores_and_completes():
    h = Harness(
        [
            PromptQueued(PROMPT),
            NodeStarted(PROMPT, "1"),
            Advance(1),
            NodeStarted(PROMPT, "2"),
            Advance(1),
            NodeStarted(PROMPT, "3"),
            NodeExecuted(PROMPT, "3", (ref(),)),
            Advance(1),
            ExecutionSucceeded(PROMPT, {"3": (ref(),)}),
        ]
    )
    h.files.inputs["in-1"] = b"abc"

    result = await h.runner.handle(h.job([input_file()]))

    assert result.outcome == Outcome.COMPLETED
    assert h.claims.calls == [("tenant-a", "job-1", WORKER)]
    assert h.types == [
        "executor.job.started",
        "executor.job.progressed",
        "executor.job.progressed",
        "executor.job.progressed",
        "executor.job.progressed",
        "executor.job.completed",
    ]
    [started] = h.publisher.of(JobStarted)
    assert (started.data.attempt, started.data.worker_id) == (2, WORKER)
    assert (started.subject, started.tenant_id) == ("job-1", "tenant-a")
    assert h.engine.uploads == {"job-1/in.png": b"abc"}
    assert h.engine.prompts[0]["1"]["inputs"]["image"] == "job-1/in.png"
    progressed = h.publisher.of(JobProgressed)
    assert [(p.data.node_id, p.data.class_type) for p in progressed[:3]] == [
        ("1", "LoadImage"),
        ("2", "ImageInvert"),
        ("3", "SaveImage"),
    ]
    assert [p.data.nodes_done for p in progressed] == [0, 1, 2, 3]
    assert progressed[-1].data.fraction == 1.0
    assert all(p.data.nodes_total == 3 for p in progressed)
    [completed] = h.publisher.of(JobCompleted)
    [output] = completed.data.outputs
    assert (output.node_id, output.width, output.height) == ("3", 4, 3)
    assert completed.data.duration_ms == 3000
    [stored] = h.files.stored
    assert stored.job_id == "job-1"
    assert h.engine.cleaned == [
        JobFiles(inputs=("job-1/in.png",), outputs=(ref(), ref()))
    ]
    assert h.runner.current_job_id is None


async def test_progress_is_throttled_by_the_clock():
    h = Harness(
        [
            PromptQueued(PROMPT),
            NodeStarted(PROMPT, "2"),
            NodeProgress(PROMPT, "2", 1, 10),
            Advance(0.2),
            NodeProgress(PROMPT, "2", 2, 10),
            Advance(0.3),
            NodeProgress(PROMPT, "2", 5, 10),
            Advance(0.1),
            NodeProgress(PROMPT, "2", 6, 10),
            ExecutionSucceeded(PROMPT, {}),
        ]
    )

    await h.runner.handle(h.job())

    progressed = h.publisher.of(JobProgressed)
    assert [(p.data.step, p.data.max) for p in progressed] == [(None, None), (5, 10)]
    assert progressed[1].data.fraction == pytest.approx(0.5 / 3)


async def test_outputs_are_stored_and_published_as_each_node_finishes():
    second = ref("4", 0)
    h = Harness(
        [
            PromptQueued(PROMPT),
            NodeStarted(PROMPT, "3"),
            NodeExecuted(PROMPT, "3", (ref(), ref(index=1), ref(folder="temp"))),
            NodeExecuted(PROMPT, "4", (second,)),
            ExecutionSucceeded(PROMPT, {"3": (ref(), ref(index=1)), "4": (second,)}),
        ]
    )

    await h.runner.handle(h.job())

    assert h.journal == [
        "enqueue:executor.job.started",
        "engine:PromptQueued",
        "engine:NodeStarted",
        "enqueue:executor.job.progressed",
        "engine:NodeExecuted",
        "store:3/0",
        "store:3/1",
        "enqueue:executor.job.progressed",
        "engine:NodeExecuted",
        "store:4/0",
        "enqueue:executor.job.progressed",
        "engine:ExecutionSucceeded",
        "publish:executor.job.completed",
    ]
    progressed = h.publisher.of(JobProgressed)
    assert [[o.file_id for o in p.data.outputs] for p in progressed] == [
        [],
        ["file-3-0", "file-3-1"],
        ["file-4-0"],
    ]
    [completed] = h.publisher.of(JobCompleted)
    assert [o.file_id for o in completed.data.outputs] == [
        "file-3-0",
        "file-3-1",
        "file-4-0",
    ]
    assert ref(folder="temp") in h.engine.cleaned[0].outputs


async def test_cached_run_stores_outputs_from_the_history():
    h = Harness(
        [
            PromptQueued(PROMPT),
            NodeCached(PROMPT, ("1", "2", "3")),
            ExecutionSucceeded(PROMPT, {"3": (ref(),)}),
        ]
    )

    await h.runner.handle(h.job())

    assert h.types[-1] == "executor.job.completed"
    [completed] = h.publisher.of(JobCompleted)
    assert [o.file_id for o in completed.data.outputs] == ["file-3-0"]
    assert h.publisher.of(JobProgressed)[0].data.nodes_done == 3


async def test_node_error_fails_without_retry():
    h = Harness(
        [
            PromptQueued(PROMPT),
            NodeStarted(PROMPT, "3"),
            ExecutionFailed(
                PROMPT,
                "3",
                "SaveImage",
                "disk full",
                "OSError",
                ("Traceback\n", "  line 1\n"),
            ),
        ]
    )

    result = await h.runner.handle(h.job())

    [failed] = h.publisher.of(JobFailed)
    assert result.failure == FailureCode.NODE_EXECUTION_ERROR
    assert failed.data.code == FailureCode.NODE_EXECUTION_ERROR
    assert (failed.data.node_id, failed.data.class_type) == ("3", "SaveImage")
    assert failed.data.message == "OSError: disk full"
    assert failed.data.traceback == "Traceback\n  line 1\n"
    assert failed.data.retryable is False
    assert h.types[-1] == "executor.job.failed"


async def test_rejected_prompt_fails_as_invalid_workflow_with_node_errors():
    body = {
        "error": {"type": "prompt_outputs_failed_validation", "message": "Bad"},
        "node_errors": {
            "1": {
                "errors": [{"message": "Value too small", "details": "width -5"}],
                "class_type": "EmptyImage",
            }
        },
    }
    h = Harness([PromptRejected(400, body)])

    await h.runner.handle(h.job())

    [failed] = h.publisher.of(JobFailed)
    assert failed.data.code == FailureCode.INVALID_WORKFLOW
    assert failed.data.retryable is False
    assert "node 1 (EmptyImage): Value too small: width -5" in failed.data.message


async def test_the_final_event_waits_until_every_earlier_one_is_acknowledged():
    h = Harness(
        [PromptQueued(PROMPT), NodeStarted(PROMPT, "1"), ExecutionSucceeded(PROMPT, {})]
    )
    h.publisher.held = True
    task = asyncio.create_task(h.runner.handle(h.job()))
    while len(h.publisher.open) < 2:
        h.publisher.queued.clear()
        await asyncio.wait_for(h.publisher.queued.wait(), 5)

    assert h.publisher.of(JobCompleted) == []
    for delivery in h.publisher.open:
        delivery.set_result(None)
    result = await asyncio.wait_for(task, 5)

    assert result.outcome == Outcome.COMPLETED
    assert h.journal[-1] == "publish:executor.job.completed"


async def test_an_undelivered_event_fails_the_attempt_before_the_final_event():
    h = Harness(
        [PromptQueued(PROMPT), NodeStarted(PROMPT, "1"), ExecutionSucceeded(PROMPT, {})]
    )
    h.publisher.held = True
    task = asyncio.create_task(h.runner.handle(h.job()))
    while len(h.publisher.open) < 2:
        h.publisher.queued.clear()
        await asyncio.wait_for(h.publisher.queued.wait(), 5)

    h.publisher.open[0].set_result(None)
    h.publisher.open[1].set_exception(DeliveryFailed("broker gone"))
    with pytest.raises(DeliveryFailed):
        await asyncio.wait_for(task, 5)

    assert h.publisher.of(JobCompleted) == []
    assert h.runner.current_job_id is None


async def test_engine_crash_restarts_the_engine_and_allows_a_retry():
    h = Harness([PromptQueued(PROMPT), NodeStarted(PROMPT, "1"), EngineCrashed(-9)])

    await h.runner.handle(h.job())

    [failed] = h.publisher.of(JobFailed)
    assert failed.data.code == FailureCode.ENGINE_CRASHED
    assert failed.data.retryable is True
    assert len(h.keeper.restarts) == 1
    assert h.journal.index("publish:executor.job.failed") == len(h.journal) - 1


async def test_storage_error_is_retryable():
    h = Harness([PromptQueued(PROMPT), NodeExecuted(PROMPT, "3", (ref(),))])
    h.files.fail_outputs = True

    await h.runner.handle(h.job())

    [failed] = h.publisher.of(JobFailed)
    assert (failed.data.code, failed.data.retryable) == (
        FailureCode.STORAGE_ERROR,
        True,
    )
    assert h.keeper.restarts == []


async def test_missing_input_fails_before_the_run():
    h = Harness([PromptQueued(PROMPT)])

    await h.runner.handle(h.job([input_file()]))

    [failed] = h.publisher.of(JobFailed)
    assert (failed.data.code, failed.data.retryable) == (
        FailureCode.INPUT_UNAVAILABLE,
        False,
    )
    assert h.engine.prompts == []


async def test_refused_claim_publishes_nothing():
    h = Harness([PromptQueued(PROMPT)], claim=Claim(granted=False, reason="final"))

    result = await h.runner.handle(h.job())

    assert result.outcome == Outcome.SKIPPED
    assert h.publisher.events == []
    assert h.engine.prompts == []


async def test_cancel_interrupts_the_current_prompt_and_reports_cancelled():
    h = Harness(
        [
            PromptQueued(PROMPT),
            NodeStarted(PROMPT, "2"),
            AwaitInterrupt(),
            ExecutionInterrupted(PROMPT, "2"),
        ]
    )
    task = asyncio.create_task(h.runner.handle(h.job()))
    await h.engine.blocked.wait()

    assert h.runner.request_cancel("another-job", "not ours") is False
    assert h.engine.interrupts == []
    assert h.runner.request_cancel("job-1", "user asked") is True
    result = await task

    assert result.outcome == Outcome.CANCELLED
    assert h.engine.interrupts == [PROMPT]
    assert h.types[-1] == "executor.job.cancelled"
    [cancelled] = h.publisher.of(JobCancelled)
    assert (cancelled.data.reason, cancelled.data.attempt) == ("user asked", 2)
    assert h.keeper.restarts == []


async def test_timeout_interrupts_and_fails_without_restart_when_comfyui_obeys():
    h = Harness(
        [PromptQueued(PROMPT), AwaitInterrupt(), ExecutionInterrupted(PROMPT, None)]
    )
    task = asyncio.create_task(h.runner.handle(h.job()))
    await h.engine.blocked.wait()
    await h.clock.sleeping(1)

    h.clock.advance(TIMEOUT_S)
    result = await task

    assert result.failure == FailureCode.TIMEOUT
    assert h.engine.interrupts == [PROMPT]
    assert h.keeper.restarts == []
    [failed] = h.publisher.of(JobFailed)
    assert failed.data.retryable is False


async def test_timeout_restarts_the_engine_when_the_interrupt_is_ignored():
    h = Harness([PromptQueued(PROMPT), AwaitInterrupt(honour=False)])
    task = asyncio.create_task(h.runner.handle(h.job()))
    await h.engine.blocked.wait()
    await h.clock.sleeping(1)

    h.clock.advance(TIMEOUT_S)
    await h.clock.sleeping(1)
    assert h.engine.interrupts == [PROMPT]
    assert not task.done()
    h.clock.advance(GRACE_S)
    result = await task

    assert result.failure == FailureCode.TIMEOUT
    assert len(h.keeper.restarts) == 1
    assert h.journal[-1] == "publish:executor.job.failed"
    assert len(h.engine.cleaned) == 1


async def test_the_earlier_of_deadline_and_timeout_applies():
    h = Harness(
        [PromptQueued(PROMPT), AwaitInterrupt(), ExecutionInterrupted(PROMPT, None)]
    )
    job = h.job(deadline=h.clock.now() + timedelta(seconds=5))
    task = asyncio.create_task(h.runner.handle(job))
    await h.engine.blocked.wait()
    await h.clock.sleeping(1)

    h.clock.advance(5)
    result = await task

    assert result.failure == FailureCode.TIMEOUT


async def test_shutdown_leaves_no_final_event_and_cleans_up():
    h = Harness([PromptQueued(PROMPT), AwaitInterrupt(honour=False)])
    task = asyncio.create_task(h.runner.handle(h.job()))
    await h.engine.blocked.wait()

    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    assert h.types == ["executor.job.started"]
    assert h.engine.interrupts == [PROMPT]
    assert len(h.engine.cleaned) == 1
    assert h.runner.current_job_id is None


def test_force_fresh_outputs_marks_only_sink_nodes() -> None:
    prompt: dict[str, Any] = {
        "1": {"class_type": "EmptyImage", "inputs": {"width": 8}},
        "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0]}},
        "4": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}},
    }
    force_fresh_outputs(prompt, "job:1")
    marked = {
        node_id for node_id, node in prompt.items() if RUN_MARK_INPUT in node["inputs"]
    }
    assert marked == {"3", "4"}
    assert prompt["3"]["inputs"][RUN_MARK_INPUT] == "job:1"
