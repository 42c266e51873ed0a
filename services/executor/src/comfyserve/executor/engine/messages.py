"""Pure parsing of ComfyUI WebSocket messages and history entries for one prompt."""

import json
import struct
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
    PreviewImage,
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
    `executing`) are ignored: the socket attributes what it can of them.
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


# Binary frames (API.md §B.5.4): a 4-byte big-endian event type, then its
# payload. Type 1 is `[4-byte image format][image]`; type 4 (builds that were
# told `supports_preview_metadata`) is `[4-byte JSON length][JSON][image]`.
_PREVIEW_IMAGE = 1
_PREVIEW_WITH_METADATA = 4
_IMAGE_FORMATS = {1: "image/jpeg", 2: "image/png"}
_WORD = struct.Struct(">I")


def _metadata(frame: bytes) -> tuple[dict[str, Any], bytes] | None:
    """A type-4 frame's metadata and image; None for any other frame."""
    if len(frame) < 2 * _WORD.size:
        return None
    (kind,) = _WORD.unpack_from(frame, 0)
    (word,) = _WORD.unpack_from(frame, _WORD.size)
    body = frame[2 * _WORD.size :]
    if kind != _PREVIEW_WITH_METADATA or word > len(body):
        return None
    try:
        metadata = json.loads(body[:word])
    except ValueError:
        return None
    if not isinstance(metadata, dict):
        return None
    return metadata, body[word:]


def preview_prompt_id(frame: bytes) -> str | None:
    """The prompt a binary frame names (type 4 only); None when it names none."""
    decoded = _metadata(frame)
    prompt_id = None if decoded is None else decoded[0].get("prompt_id")
    return prompt_id if isinstance(prompt_id, str) else None


def parse_binary(frame: bytes, prompt_id: str) -> PreviewImage | None:
    """The preview a binary frame carries for `prompt_id`; None for other
    frames (text, another prompt's preview) and malformed ones."""
    if len(frame) < 2 * _WORD.size:
        return None
    (kind,) = _WORD.unpack_from(frame, 0)
    (word,) = _WORD.unpack_from(frame, _WORD.size)
    body = frame[2 * _WORD.size :]
    if kind == _PREVIEW_IMAGE:
        content_type = _IMAGE_FORMATS.get(word)
        if content_type is None or not body:
            return None
        return PreviewImage(content_type=content_type, data=body)
    decoded = _metadata(frame)
    if decoded is None:
        return None
    metadata, image = decoded
    if not image:
        return None
    if metadata.get("prompt_id") not in (None, prompt_id):
        return None
    content_type = metadata.get("image_type")
    if not isinstance(content_type, str) or content_type not in _IMAGE_FORMATS.values():
        return None
    return PreviewImage(
        content_type=content_type,
        data=image,
        node_id=_str_or_none(metadata.get("node_id")),
    )
