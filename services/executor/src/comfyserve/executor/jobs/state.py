"""What the runner knows about the attempt it runs, and how the attempt ends."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from comfyserve.contracts.events import Event, OutputFile
from comfyserve.executor.engine import OutputRef
from comfyserve.executor.jobs.models import Assignment


class StopReason(StrEnum):
    CANCEL = "cancel"
    TIMEOUT = "timeout"
    # The attempt is not ours any more (lease lost or the job ended elsewhere):
    # stop and report nothing, the job's owner reports.
    SUPERSEDED = "superseded"
    OUTPUT_LIMIT = "output_limit"


@dataclass(eq=False)
class JobState:
    assignment: Assignment
    started_at: float = 0.0
    # The engine's restart count when the attempt started: which one it ran on.
    engine: int = 0
    stop: StopReason | None = None
    cancel_reason: str = ""
    stop_requested: asyncio.Event = field(default_factory=asyncio.Event)
    prompt_id: str | None = None
    # Set once ComfyUI runs the prompt (or the run ended): a staged job's
    # prompt waits in ComfyUI's queue first, and its timeout counts from here.
    executing: asyncio.Event = field(default_factory=asyncio.Event)
    # Set once the job this one was staged behind ended; None: none is ahead.
    behind: asyncio.Event | None = None
    run_ended: bool = False
    hung: bool = False
    inputs: list[str] = field(default_factory=list)
    refs: list[OutputRef] = field(default_factory=list)
    stored: dict[tuple[str, int], OutputFile] = field(default_factory=dict)
    done: set[str] = field(default_factory=set)
    current_node: str | None = None
    step: int | None = None
    max: int | None = None
    last_progress: float | None = None
    # Previews stored so far, when the last was, and its file id (sent on
    # every progress event after it).
    previews: int = 0
    last_preview: float | None = None
    preview_file_id: str | None = None
    deliveries: list[asyncio.Future[object]] = field(default_factory=list)

    @property
    def job_id(self) -> str:
        return self.assignment.job_id

    @property
    def tenant_id(self) -> str:
        return self.assignment.tenant_id

    @property
    def attempt(self) -> int:
        return self.assignment.attempt

    @property
    def graph(self) -> Mapping[str, Any]:
        return self.assignment.graph

    def class_type(self, node_id: str | None) -> str | None:
        node = self.graph.get(node_id) if node_id is not None else None
        if isinstance(node, dict) and isinstance(node.get("class_type"), str):
            return str(node["class_type"])
        return None

    def request_stop(self, reason: StopReason, why: str = "") -> None:
        if self.stop is None:
            self.stop = reason
            self.cancel_reason = why
        self.stop_requested.set()


@dataclass(frozen=True, slots=True)
class Ending:
    """The final event of an attempt (None when it was superseded: the job's
    new owner reports), and why the engine must restart first."""

    event: Event | None
    restart: str | None = None
