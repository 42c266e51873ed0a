"""The boundaries of the job runner: Kafka, the workflow and storage services,
the engine's supervisor and time. Tests replace each with a hand-written fake."""

from __future__ import annotations

from collections.abc import Awaitable, Sequence
from datetime import datetime
from typing import Protocol

from comfyserve.contracts.events import Event, InputFile, OutputFile
from comfyserve.executor.jobs.models import (
    Assignment,
    LeaseStatus,
    NewOutput,
    NewPreview,
)


class Publisher(Protocol):
    async def publish(self, event: Event) -> None:
        """Returns once Kafka has acknowledged the event, retrying through a
        broker outage for as long as it lasts; raises `EventTooLargeError` for
        an event its topic can never take."""

    async def enqueue(self, event: Event) -> Awaitable[object]:
        """Queues the event behind every earlier one of this publisher and
        returns at once; the result completes when Kafka acknowledged it, or
        raises why it was not delivered."""


class Dispatch(Protocol):
    async def acquire(
        self, worker_id: str, pool: str, wait_s: float
    ) -> Assignment | None:
        """The next job of `pool`, granted to `worker_id`; None when none came
        within `wait_s`. Retries while the workflow service is unreachable."""

    async def renew(
        self, worker_id: str, leases: Sequence[tuple[str, int]]
    ) -> list[LeaseStatus]:
        """Renews the leases; raises `DispatchUnavailable` when the workflow
        service cannot be reached."""


class FileStore(Protocol):
    async def fetch_input(self, tenant_id: str, file: InputFile) -> bytes:
        """Raises `InputUnavailable` or `StorageFailed`."""

    async def store_output(self, tenant_id: str, output: NewOutput) -> OutputFile:
        """Records and uploads one output, which storage makes ready once the
        job ends; raises `StorageFailed` or `OutputRejected`."""

    async def store_preview(self, tenant_id: str, preview: NewPreview) -> str:
        """Records and uploads a short-lived preview; its file id. Raises
        `StorageFailed` or `OutputRejected`."""


class EngineKeeper(Protocol):
    @property
    def restart_count(self) -> int:
        """Restarts done so far: which engine a job ran on."""

    async def restart(self, reason: str, *, since: int | None = None) -> None:
        """Restarts a managed engine and republishes its catalog, unless it
        was restarted after `since` (the count the caller saw); never raises
        for an engine that cannot be restarted."""


class Clock(Protocol):
    def monotonic(self) -> float: ...

    def now(self) -> datetime: ...

    async def sleep(self, seconds: float) -> None: ...
