"""Values the job runner exchanges with its ports."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from comfyserve.contracts.events import FailureCode, InputFile, OutputKind


@dataclass(frozen=True, slots=True)
class FileInputRef:
    """A node input that names an input file."""

    node_id: str
    input_name: str


@dataclass(frozen=True, slots=True)
class Assignment:
    """An attempt the workflow service granted this worker, and what to run."""

    job_id: str
    tenant_id: str
    attempt: int
    graph: dict[str, Any]
    timeout_seconds: int
    deadline: datetime
    lease_seconds: float
    inputs: tuple[InputFile, ...] = ()
    file_inputs: tuple[FileInputRef, ...] = field(default_factory=tuple)
    # Secret: goes into the prompt's `extra_data` and nowhere else (ADR 0006).
    partner_key: str | None = field(default=None, repr=False)
    # The submit's trace context: the attempt's spans join that trace.
    traceparent: str | None = None


class LeaseState(StrEnum):
    HELD = "held"
    CANCEL_REQUESTED = "cancel_requested"
    LOST = "lost"
    ENDED = "ended"


@dataclass(frozen=True, slots=True)
class LeaseStatus:
    job_id: str
    attempt: int
    state: LeaseState


@dataclass(frozen=True, slots=True)
class NewOutput:
    """An output file read from the engine, ready to be stored."""

    job_id: str
    attempt: int
    node_id: str
    index: int
    filename: str
    kind: OutputKind
    content_type: str
    data: bytes
    sha256: str
    width: int | None = None
    height: int | None = None

    @property
    def size(self) -> int:
        return len(self.data)


@dataclass(frozen=True, slots=True)
class NewPreview:
    """A preview image of a running attempt, to keep for a short while."""

    job_id: str
    attempt: int
    # Previews of one attempt, numbered from 1; names the stored file.
    sequence: int
    content_type: str
    data: bytes = field(repr=False)

    @property
    def filename(self) -> str:
        extension = "png" if self.content_type == "image/png" else "jpg"
        return f"preview-{self.attempt}-{self.sequence}.{extension}"


class Outcome(StrEnum):
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    ABANDONED = "abandoned"


@dataclass(frozen=True, slots=True)
class JobResult:
    """How running one attempt ended."""

    outcome: Outcome
    failure: FailureCode | None = None
    duration_s: float | None = None
