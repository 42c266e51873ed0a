"""Pure parsing of ComfyUI WebSocket messages and history entries for one prompt."""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from comfyserve.executor.engine.events import (
    EngineEvent,
    ExecutionFailed,
    ExecutionInterrupted,
    ExecutionStarted,
    ExecutionSucceeded,
    NodeCached,
    NodeExecuted,
    NodeProgress,
    NodeStarted,
)
from comfyserve.executor.engine.outputs import (
    refs_from_history_outputs,
    refs_from_node_output,
    texts_from_history_outputs,
)


@dataclass(frozen=True, slots=True)
class CompletionSignal:
    """The prompt finished (G2+ `execution_success`, or `executing` with node null);
    the outcome must be read from `/history`."""

    prompt_id: str
    success_signalled: bool


MessageResult = EngineEvent | CompletionSignal


def _str_or_none(value: Any) -> str | None:
    return None if value is None else str(value)


def _str_tuple(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list | tuple):
        return ()
    return tuple(str(item) for item in value)


def failed_from_payload(prompt_id: str, data: Mapping[str, Any]) -> ExecutionFailed:
    return ExecutionFailed(
        prompt_id=prompt_id,
        node_id=_str_or_none(data.get("node_id")),
        node_type=_str_or_none(data.get("node_type")),
        exception_message=str(data.get("exception_message") or ""),
        exception_type=str(data.get("exception_type") or ""),
        traceback=_str_tuple(data.get("traceback")),
        executed=_str_tuple(data.get("executed")),
    )


def interrupted_from_payload(
    prompt_id: str, data: Mapping[str, Any]
) -> ExecutionInterrupted:
    return ExecutionInterrupted(
        prompt_id=prompt_id,
        node_id=_str_or_none(data.get("node_id")),
        node_type=_str_or_none(data.get("node_type")),
    )


def parse_message(message: Any, prompt_id: str) -> MessageResult | None:
    """Translate one decoded text frame; None for other prompts' and unknown messages.

    Messages without a `prompt_id` (the `status` broadcast, the reconnect
    `executing`) are ignored: with one job per ComfyUI they add nothing.
    `progress_state` (G2+) repeats what `progress` says, so it is ignored too.
    """
    if not isinstance(message, Mapping):
        return None
    kind = message.get("type")
    data = message.get("data")
    if not isinstance(data, Mapping) or data.get("prompt_id") != prompt_id:
        return None
    match kind:
        case "execution_start":
            return ExecutionStarted(prompt_id)
        case "execution_cached":
            return NodeCached(prompt_id, _str_tuple(data.get("nodes")))
        case "executing":
            node = data.get("node")
            if node is None:
                return CompletionSignal(prompt_id, success_signalled=False)
            return NodeStarted(prompt_id, str(node))
        case "progress":
            return NodeProgress(
                prompt_id,
                _str_or_none(data.get("node")),
                float(data.get("value") or 0),
                float(data.get("max") or 0),
            )
        case "executed":
            node_id = str(data.get("node"))
            output = data.get("output")
            refs = (
                refs_from_node_output(node_id, output)
                if isinstance(output, Mapping)
                else ()
            )
            return NodeExecuted(prompt_id, node_id, refs)
        case "execution_success":
            return CompletionSignal(prompt_id, success_signalled=True)
        case "execution_error":
            return failed_from_payload(prompt_id, data)
        case "execution_interrupted":
            return interrupted_from_payload(prompt_id, data)
    return None


def outcome_from_history(
    prompt_id: str, entry: Mapping[str, Any]
) -> ExecutionSucceeded | ExecutionFailed | ExecutionInterrupted:
    """Outcome of a finished prompt from its `/history/{id}` entry.

    Failure and interruption differ only by the last status message.
    """
    outputs = entry.get("outputs")
    outputs = outputs if isinstance(outputs, Mapping) else {}
    status = entry.get("status")
    if not isinstance(status, Mapping) or status.get("status_str") != "error":
        return ExecutionSucceeded(
            prompt_id=prompt_id,
            outputs_by_node=refs_from_history_outputs(outputs),
            texts_by_node=texts_from_history_outputs(outputs),
        )
    messages = status.get("messages")
    for item in reversed(messages if isinstance(messages, list) else []):
        if not isinstance(item, list | tuple) or len(item) != 2:
            continue
        kind, data = item
        if not isinstance(data, Mapping):
            continue
        if kind == "execution_error":
            return failed_from_payload(prompt_id, data)
        if kind == "execution_interrupted":
            return interrupted_from_payload(prompt_id, data)
    return ExecutionFailed(
        prompt_id=prompt_id,
        node_id=None,
        node_type=None,
        exception_message="ComfyUI recorded an error without details",
        exception_type="",
    )
