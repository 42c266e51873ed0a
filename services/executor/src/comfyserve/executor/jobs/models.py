"""Values the job runner exchanges with its ports."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from comfyserve.contracts.events import FailureCode, OutputKind


@dataclass(frozen=True, slots=True)
class Claim:
    """The workflow service's answer to a claim; `attempt` is set when granted."""

    granted: bool
    attempt: int = 0
    reason: str = ""


@dataclass(frozen=True, slots=True)
class NewOutput:
    """An output file read from the engine, ready to be stored."""

    job_id: str
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


class Outcome(StrEnum):
    SKIPPED = "skipped"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


@dataclass(frozen=True, slots=True)
class JobResult:
    """How handling one submitted record ended."""

    outcome: Outcome
    failure: FailureCode | None = None
    duration_s: float | None = None
