"""Hand-written fakes of the job runner's ports (engine, Kafka, storage, the
engine's keeper, the workflow service's dispatch and time), and a harness that
wires a real `JobRunner` to them."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from PIL import Image

from comfyserve.contracts.events import Event, InputFile, OutputFile
from comfyserve.executor.engine import (
    CancelOutcome,
    EngineEvent,
    JobFiles,
    OutputKind,
    OutputRef,
)
from comfyserve.executor.errors import (
    DispatchUnavailable,
    ExecutorError,
    InputUnavailable,
)
from comfyserve.executor.jobs.models import (
    Assignment,
    FileInputRef,
    JobResult,
    LeaseState,
    LeaseStatus,
    NewOutput,
    NewPreview,
)
from comfyserve.executor.jobs.runner import JobRunner
from comfyserve.runtime.kafka import encode_event

WORKER = "worker-1"
SOURCE = f"executor/{WORKER}"
JOB = "job-1"
TENANT = "tenant-a"
ATTEMPT = 2
GRACE_S = 10.0
TIMEOUT_S = 60
LEASE_S = 15.0
PROMPT = "prompt-1"
GRAPH: dict[str, Any] = {
    "1": {"class_type": "LoadImage", "inputs": {"image": "in.png"}},
    "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
    "3": {
        "class_type": "SaveImage",
        "inputs": {"images": ["2", 0], "filename_prefix": "x"},
    },
}

_E = TypeVar("_E", bound=Event)


async def eventually(check: Callable[[], object], timeout_s: float = 5.0) -> None:
    """Returns once `check()` is true, letting other tasks run meanwhile."""
    async with asyncio.timeout(timeout_s):
        while True:
            if check():
                return
            await asyncio.sleep(0)


def png(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (1, 2, 3)).save(buffer, format="PNG")
    return buffer.getvalue()


def ref(
    node_id: str = "3",
    index: int = 0,
    folder: str = "output",
    *,
    kind: OutputKind = OutputKind.IMAGE,
    filename: str | None = None,
) -> OutputRef:
    return OutputRef(
        node_id=node_id,
        index=index,
        filename=filename or f"x_{index:05}_.png",
        subfolder=f"{JOB}-{ATTEMPT}",
        folder_type=folder,
        media_key="images",
        kind=kind,
        content_type="image/png" if kind == OutputKind.IMAGE else "text/plain",
    )


def many_refs(node_id: str, count: int) -> tuple[OutputRef, ...]:
    return tuple(ref(node_id, index, kind=OutputKind.TEXT) for index in range(count))


class DeliveryFailed(Exception):
    """What a fake Kafka delivery fails with."""


def input_file(
    file_id: str = "in-1", node_id: str = "1", filename: str = "in.png"
) -> InputFile:
    return InputFile(
        file_id=file_id,
        node_id=node_id,
        input_name="image",
        filename=filename,
        bucket="b",
        key=f"inputs/{TENANT}/{file_id}",
        content_type="image/png",
        size=3,
    )


class ManualClock:
    """Time moves only when a test advances it."""

    def __init__(self) -> None:
        self.t = 1000.0
        self.wall = datetime(2026, 1, 1, tzinfo=UTC)
        self._sleepers: list[tuple[float, asyncio.Future[None]]] = []

    def monotonic(self) -> float:
        return self.t

    def now(self) -> datetime:
        return self.wall + timedelta(seconds=self.t - 1000.0)

    async def sleep(self, seconds: float) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._sleepers.append((self.t + seconds, future))
        if seconds <= 0:
            future.set_result(None)
        await future

    @property
    def sleepers(self) -> int:
        return sum(1 for _, future in self._sleepers if not future.done())

    async def sleeping(self, count: int) -> None:
        """Returns once `count` tasks wait on this clock."""
        await eventually(lambda: self.sleepers == count)

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


@dataclass(frozen=True)
class Do:
    """Script step: call `action` (from inside the engine's run)."""

    action: Callable[[], object]


Step = EngineEvent | Advance | AwaitInterrupt | Do | Exception


class FakeEngine:
    def __init__(
        self,
        script: list[Step],
        clock: ManualClock,
        journal: list[str],
        local_roots: tuple[Path, ...] = (),
    ) -> None:
        self.script = script
        self.clock = clock
        self.journal = journal
        self.roots = local_roots
        self.uploads: dict[str, bytes] = {}
        self.subfolders: list[str] = []
        self.prompts: list[dict[str, Any]] = []
        self.deadlines: list[float] = []
        self.partner_keys: list[str | None] = []
        self.interrupts: list[str] = []
        self.cleaned: list[JobFiles] = []
        self.cleanup_error: Exception | None = None
        self.outputs: dict[tuple[str, int], bytes] = {}
        self.blocked = asyncio.Event()
        self._interrupted = asyncio.Event()

    @property
    def base_url(self) -> str:
        return "http://fake"

    @property
    def local_roots(self) -> tuple[Path, ...]:
        return self.roots

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
        self.subfolders.append(subfolder)
        self.uploads[name] = data
        return name

    async def run(
        self,
        prompt: Mapping[str, Any],
        job_id: str,
        deadline: float,
        *,
        partner_key: str | None = None,
    ) -> AsyncGenerator[EngineEvent, None]:
        self.prompts.append(dict(prompt))
        self.deadlines.append(deadline)
        self.partner_keys.append(partner_key)
        for step in self.script:
            if isinstance(step, Advance):
                self.clock.advance(step.seconds)
            elif isinstance(step, AwaitInterrupt):
                self.blocked.set()
                await self._interrupted.wait()
                if not step.honour:
                    await asyncio.Event().wait()
            elif isinstance(step, Do):
                step.action()
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
        if ref.kind != OutputKind.IMAGE:
            return b"text"
        return self.outputs.get((ref.node_id, ref.index), png(4, 3))

    async def cleanup(self, files: JobFiles) -> None:
        self.cleaned.append(files)
        if self.cleanup_error is not None:
            raise self.cleanup_error


class FakePublisher:
    """Refuses events too large for their topic, as Kafka's producer does.

    Acknowledges queued events at once unless `hold`, which keeps their
    deliveries open for the test to settle; `fail_deliveries` fails them and
    `refuse` makes `enqueue` itself raise (a broker that cannot be reached).
    """

    def __init__(self, journal: list[str]) -> None:
        self.journal = journal
        self.events: list[Event] = []
        self.hold = False
        self.open: list[asyncio.Future[object]] = []
        self.refuse: Exception | None = None
        self.fail_deliveries: Exception | None = None

    async def publish(self, event: Event) -> None:
        encode_event(event)
        self.journal.append(f"publish:{event.type}")
        self.events.append(event)

    async def enqueue(self, event: Event) -> Awaitable[object]:
        if self.refuse is not None:
            raise self.refuse
        encode_event(event)
        self.journal.append(f"enqueue:{event.type}")
        self.events.append(event)
        delivery: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        if self.hold:
            self.open.append(delivery)
        elif self.fail_deliveries is not None:
            delivery.set_exception(self.fail_deliveries)
        else:
            delivery.set_result(None)
        return delivery

    def of(self, cls: type[_E]) -> list[_E]:
        return [event for event in self.events if isinstance(event, cls)]

    @property
    def types(self) -> list[str]:
        return [event.type for event in self.events]


class FakeFiles:
    def __init__(self, journal: list[str]) -> None:
        self.journal = journal
        self.inputs: dict[str, bytes] = {}
        self.fetched: list[tuple[str, str]] = []
        self.stored: list[tuple[str, NewOutput]] = []
        self.output_error: ExecutorError | None = None
        self.previews: list[tuple[str, NewPreview]] = []
        self.preview_error: ExecutorError | None = None
        # While set, input fetches wait until the event is set.
        self.gate: asyncio.Event | None = None

    async def fetch_input(self, tenant_id: str, file: InputFile) -> bytes:
        self.fetched.append((tenant_id, file.file_id))
        if self.gate is not None:
            await self.gate.wait()
        if file.file_id not in self.inputs:
            raise InputUnavailable(f"file {file.file_id} not found")
        return self.inputs[file.file_id]

    async def store_output(self, tenant_id: str, output: NewOutput) -> OutputFile:
        if self.output_error is not None:
            raise self.output_error
        self.journal.append(f"store:{output.node_id}/{output.index}")
        self.stored.append((tenant_id, output))
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

    async def store_preview(self, tenant_id: str, preview: NewPreview) -> str:
        if self.preview_error is not None:
            raise self.preview_error
        self.journal.append(f"preview:{preview.sequence}")
        self.previews.append((tenant_id, preview))
        return f"preview-{preview.sequence}"


class FakeKeeper:
    def __init__(self, journal: list[str]) -> None:
        self.journal = journal
        self.restarts: list[str] = []
        self.skipped: list[str] = []

    @property
    def restart_count(self) -> int:
        return len(self.restarts)

    async def restart(self, reason: str, *, since: int | None = None) -> None:
        if since is not None and since != len(self.restarts):
            self.skipped.append(reason)
            return
        self.journal.append("restart")
        self.restarts.append(reason)


Lease = tuple[str, int]


class FakeDispatch:
    """The workflow service's side of dispatch: grants come from `grants` (an
    acquire waits for the next one; None is a long-poll that found no job),
    renewals answer `states` (HELD unless set) or fail `unavailable` times."""

    def __init__(self) -> None:
        self.grants: asyncio.Queue[Assignment | None] = asyncio.Queue()
        self.acquires: list[tuple[str, str, float]] = []
        self.renewals: list[list[Lease]] = []
        self.states: dict[Lease, LeaseState] = {}
        self.unavailable = 0

    async def acquire(
        self, worker_id: str, pool: str, wait_s: float
    ) -> Assignment | None:
        self.acquires.append((worker_id, pool, wait_s))
        return await self.grants.get()

    async def renew(self, worker_id: str, leases: Sequence[Lease]) -> list[LeaseStatus]:
        self.renewals.append(list(leases))
        if self.unavailable:
            self.unavailable -= 1
            raise DispatchUnavailable("UNAVAILABLE: workflow service away")
        return [
            LeaseStatus(
                job_id, attempt, self.states.get((job_id, attempt), LeaseState.HELD)
            )
            for job_id, attempt in leases
        ]


@dataclass
class Harness:
    """A real `JobRunner` on fakes; every fake writes to one journal, so tests
    can assert the order of what happened across them."""

    script: list[Step] = field(default_factory=list)
    local_roots: tuple[Path, ...] = ()
    progress_interval_s: float = 0.5
    preview_interval_s: float = 1.0

    def __post_init__(self) -> None:
        self.journal: list[str] = []
        self.clock = ManualClock()
        self.engine = FakeEngine(
            self.script, self.clock, self.journal, self.local_roots
        )
        self.publisher = FakePublisher(self.journal)
        self.files = FakeFiles(self.journal)
        self.keeper = FakeKeeper(self.journal)
        self.runner = JobRunner(
            engine=self.engine,
            files=self.files,
            publisher=self.publisher,
            keeper=self.keeper,
            clock=self.clock,
            worker_id=WORKER,
            source=SOURCE,
            progress_interval_s=self.progress_interval_s,
            interrupt_grace_s=GRACE_S,
            preview_interval_s=self.preview_interval_s,
            local_roots=lambda: self.engine.local_roots,
        )

    def assignment(
        self,
        inputs: Sequence[InputFile] = (),
        file_inputs: Sequence[FileInputRef] = (),
        **fields: Any,
    ) -> Assignment:
        values: dict[str, Any] = {
            "job_id": JOB,
            "tenant_id": TENANT,
            "attempt": ATTEMPT,
            "graph": GRAPH,
            "timeout_seconds": TIMEOUT_S,
            "deadline": self.clock.now() + timedelta(hours=1),
            "lease_seconds": LEASE_S,
            "inputs": tuple(inputs),
            "file_inputs": tuple(file_inputs),
            **fields,
        }
        return Assignment(**values)

    async def reported(self) -> None:
        self.journal.append("reported")

    async def run(self, assignment: Assignment | None = None) -> JobResult:
        return await self.runner.handle(assignment or self.assignment(), self.reported)

    def start(self, assignment: Assignment | None = None) -> asyncio.Task[JobResult]:
        return asyncio.create_task(self.run(assignment))

    @property
    def types(self) -> list[str]:
        return self.publisher.types
