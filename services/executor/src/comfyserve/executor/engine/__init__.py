"""The ComfyUI engine adapter: drives a managed or remote ComfyUI over HTTP/WS."""

from comfyserve.executor.engine.client import ClientTimeouts, ComfyClient
from comfyserve.executor.engine.errors import (
    EngineCrashed,
    EngineError,
    EngineRestarted,
    EngineStartFailed,
    EngineTimeout,
    EngineUnavailable,
    OutputNotFound,
    RestartUnsupported,
    UnexpectedResponse,
)
from comfyserve.executor.engine.events import (
    CancelOutcome,
    EngineEvent,
    ExecutionFailed,
    ExecutionInterrupted,
    ExecutionStarted,
    ExecutionSucceeded,
    NodeCached,
    NodeExecuted,
    NodeProgress,
    NodeStarted,
    OutputKind,
    OutputRef,
    PreviewImage,
    PromptQueued,
    PromptRejected,
    TerminalEvent,
    is_terminal,
)
from comfyserve.executor.engine.files import ComfyDirs, JobFiles
from comfyserve.executor.engine.managed import ManagedComfyUI
from comfyserve.executor.engine.prompt_run import PromptState
from comfyserve.executor.engine.protocol import Engine
from comfyserve.executor.engine.remote import RemoteComfyUI

__all__ = [
    "CancelOutcome",
    "ClientTimeouts",
    "ComfyClient",
    "ComfyDirs",
    "Engine",
    "EngineCrashed",
    "EngineError",
    "EngineEvent",
    "EngineRestarted",
    "EngineStartFailed",
    "EngineTimeout",
    "EngineUnavailable",
    "ExecutionFailed",
    "ExecutionInterrupted",
    "ExecutionStarted",
    "ExecutionSucceeded",
    "JobFiles",
    "ManagedComfyUI",
    "NodeCached",
    "NodeExecuted",
    "NodeProgress",
    "NodeStarted",
    "OutputKind",
    "PreviewImage",
    "OutputNotFound",
    "OutputRef",
    "PromptQueued",
    "PromptRejected",
    "PromptState",
    "RemoteComfyUI",
    "RestartUnsupported",
    "TerminalEvent",
    "UnexpectedResponse",
    "is_terminal",
]
