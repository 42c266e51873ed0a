"""Typed events that an engine run yields, independent of the ComfyUI generation."""

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class OutputKind(StrEnum):
    IMAGE = "image"
    VIDEO = "video"
    AUDIO = "audio"
    TEXT = "text"
    LATENT = "latent"
    FILE = "file"


class CancelOutcome(StrEnum):
    INTERRUPTED = "interrupted"
    DEQUEUED = "dequeued"
    NOT_FOUND = "not_found"


@dataclass(frozen=True, slots=True)
class OutputRef:
    """One file a node produced, as ComfyUI's `/view` serves it."""

    node_id: str
    index: int
    filename: str
    subfolder: str
    folder_type: str
    media_key: str
    kind: OutputKind
    content_type: str

    @property
    def is_preview(self) -> bool:
        return self.folder_type == "temp"


@dataclass(frozen=True, slots=True)
class PromptQueued:
    prompt_id: str
    number: int | None = None
    # A 200 answer can drop invalid outputs and still run the rest.
    node_errors: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class PromptRejected:
    status: int
    body: Any

    @property
    def error_type(self) -> str | None:
        if isinstance(self.body, dict):
            error = self.body.get("error")
            if isinstance(error, dict):
                kind = error.get("type")
                return kind if isinstance(kind, str) else None
            if isinstance(error, str):
                return error
        return None

    @property
    def node_errors(self) -> Mapping[str, Any]:
        if isinstance(self.body, dict):
            errors = self.body.get("node_errors")
            if isinstance(errors, dict):
                return errors
        return {}


@dataclass(frozen=True, slots=True)
class ExecutionStarted:
    prompt_id: str


@dataclass(frozen=True, slots=True)
class NodeCached:
    prompt_id: str
    node_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class NodeStarted:
    prompt_id: str
    node_id: str


@dataclass(frozen=True, slots=True)
class NodeProgress:
    prompt_id: str
    node_id: str | None
    value: float
    max: float


@dataclass(frozen=True, slots=True)
class NodeExecuted:
    prompt_id: str
    node_id: str
    outputs: tuple[OutputRef, ...]


@dataclass(frozen=True, slots=True)
class ExecutionSucceeded:
    """The run finished; outputs come from `/history`, so cached nodes are included."""

    prompt_id: str
    outputs_by_node: Mapping[str, tuple[OutputRef, ...]]
    texts_by_node: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def outputs(self) -> tuple[OutputRef, ...]:
        return tuple(
            ref
            for refs in self.outputs_by_node.values()
            for ref in refs
            if not ref.is_preview
        )

    @property
    def previews(self) -> tuple[OutputRef, ...]:
        return tuple(
            ref
            for refs in self.outputs_by_node.values()
            for ref in refs
            if ref.is_preview
        )


@dataclass(frozen=True, slots=True)
class ExecutionFailed:
    prompt_id: str
    node_id: str | None
    node_type: str | None
    exception_message: str
    exception_type: str
    traceback: tuple[str, ...] = ()
    executed: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ExecutionInterrupted:
    """Interrupted while running, or removed from the queue before it ran."""

    prompt_id: str
    node_id: str | None
    node_type: str | None = None


_TERMINAL_TYPES = (
    ExecutionSucceeded,
    ExecutionFailed,
    ExecutionInterrupted,
    PromptRejected,
)


@dataclass(frozen=True, slots=True)
class PreviewImage:
    """A preview ComfyUI sent as a binary WebSocket frame while a node runs
    (sampler previews); `node_id` only when the frame names it (type 4)."""

    content_type: str
    data: bytes = field(repr=False)
    node_id: str | None = None


EngineEvent = (
    PromptQueued
    | PromptRejected
    | ExecutionStarted
    | NodeCached
    | NodeStarted
    | NodeProgress
    | NodeExecuted
    | ExecutionSucceeded
    | ExecutionFailed
    | ExecutionInterrupted
    | PreviewImage
)

TerminalEvent = (
    ExecutionSucceeded | ExecutionFailed | ExecutionInterrupted | PromptRejected
)


def is_terminal(event: EngineEvent) -> bool:
    return isinstance(event, _TERMINAL_TYPES)
