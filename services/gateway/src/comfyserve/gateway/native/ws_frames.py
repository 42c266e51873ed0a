"""A prompt's WebSocket messages (API.md §B.5.3) from its job's WatchJob updates,
in the order of §B.5.5.

`PromptFrames` is fed every update of one job and answers what to send: JSON
messages, `QueueMoved` where the queue changed (the socket sends `status` and
tells the tenant's other sockets), and `PreviewWanted` where a preview image
should follow as a binary frame. It holds no I/O.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from comfyserve.contracts.pb.workflow.v1 import workflow_pb2 as wf
from comfyserve.gateway.jobs import translate
from comfyserve.gateway.native import shapes

Message = dict[str, Any]


@dataclass(frozen=True, slots=True)
class QueueMoved:
    """The prompt was picked up or ended: a `status` frame goes here first."""


@dataclass(frozen=True, slots=True)
class PreviewWanted:
    file_id: str
    node_id: str


Frame = Message | QueueMoved | PreviewWanted


def message(kind: str, **data: Any) -> Message:
    return {"type": kind, "data": data}


def _now_ms() -> int:
    return int(time.time() * 1000)


def error_payload(prompt_id: str, job: wf.Job, executed: list[str]) -> Message:
    """`execution_error` as /history shows it for the same job."""
    return message(
        "execution_error",
        prompt_id=prompt_id,
        **shapes.execution_error(job, executed),
        timestamp=_now_ms(),
    )


@dataclass
class PromptFrames:
    """One prompt's messages; `adopted` when the socket took the prompt over
    mid-run (a reconnect), which starts with `executing{node}` instead."""

    prompt_id: str
    adopted: bool = False
    done: bool = False
    _started: bool = False
    _node: str = ""
    _class_type: str = ""
    _executed: list[str] = field(default_factory=list)
    _states: dict[str, Message] = field(default_factory=dict)
    _sent_outputs: set[str] = field(default_factory=set)
    _preview: str = ""

    def feed(self, update: wf.JobUpdate) -> list[Frame]:
        job = update.job
        if self.done or job.status in (
            wf.JOB_STATUS_PENDING,
            wf.JOB_STATUS_UNSPECIFIED,
        ):
            return []
        ran = job.attempt > 0 or job.HasField("started_at")
        final = job.status in translate.FINAL_STATUSES
        if final and not ran:
            # Cancelled (or expired) in the queue: ComfyUI sends nothing of a
            # prompt deleted from its queue but the queue's new length.
            self.done = True
            return [QueueMoved()]
        frames: list[Frame] = []
        if not self._started:
            frames.extend(self._start(job))
        frames.extend(self._progress(job, update.kind))
        frames.extend(self._outputs(job, [*update.new_outputs, *job.outputs]))
        if final:
            frames.extend(self._end(job))
        return frames

    def _start(self, job: wf.Job) -> list[Frame]:
        self._started = True
        if self.adopted:
            node = job.progress.node_id
            # ComfyUI's reconnect frame names the node and nothing else.
            return [message("executing", node=node)] if node else []
        prompt = self.prompt_id
        return [
            QueueMoved(),
            message("execution_start", prompt_id=prompt, timestamp=_now_ms()),
            message(
                "execution_cached", nodes=[], prompt_id=prompt, timestamp=_now_ms()
            ),
        ]

    def _progress(self, job: wf.Job, kind: wf.UpdateKind.ValueType) -> list[Frame]:
        progress = job.progress
        # The job keeps its last progress on later updates: only a progress
        # update says a node runs now.
        if kind != wf.UPDATE_KIND_PROGRESS or not progress.node_id:
            return []
        frames = self._enter(progress.node_id, progress.class_type)
        if progress.HasField("step") and progress.HasField("max"):
            node, value, top = progress.node_id, progress.step, progress.max
            frames.append(
                message(
                    "progress",
                    value=value,
                    max=top,
                    prompt_id=self.prompt_id,
                    node=node,
                )
            )
            frames.append(self._state(node, "running", value, top))
        if progress.preview_file_id and progress.preview_file_id != self._preview:
            self._preview = progress.preview_file_id
            frames.append(PreviewWanted(progress.preview_file_id, self._node))
        return frames

    def _enter(self, node: str, class_type: str = "") -> list[Frame]:
        """`executing{node}` when `node` is not the one executing already."""
        if node == self._node:
            return []
        frames: list[Frame] = []
        if self._node:
            self._executed.append(self._node)
            frames.append(self._state(self._node, "finished", 1, 1))
        self._node, self._class_type = node, class_type
        frames.append(
            message("executing", node=node, display_node=node, prompt_id=self.prompt_id)
        )
        frames.append(self._state(node, "running", 0, 1))
        return frames

    def _state(self, node: str, state: str, value: int, top: int) -> Message:
        self._states[node] = {
            "value": value,
            "max": top,
            "state": state,
            "node_id": node,
            "prompt_id": self.prompt_id,
            "display_node_id": node,
            "parent_node_id": None,
            "real_node_id": node,
        }
        return message(
            "progress_state", prompt_id=self.prompt_id, nodes=dict(self._states)
        )

    def _outputs(self, job: wf.Job, outputs: list[wf.OutputFile]) -> list[Frame]:
        fresh = [
            output
            for output in translate.unique_outputs(outputs)
            if output.file_id not in self._sent_outputs
        ]
        self._sent_outputs.update(output.file_id for output in fresh)
        # The same items `/history` lists, so a client can fetch them by `/view`.
        by_node = shapes.output_items(wf.Job(id=job.id, outputs=fresh))
        frames: list[Frame] = []
        for node, ui in by_node.items():
            frames.extend(self._enter(node))
            frames.append(
                message(
                    "executed",
                    node=node,
                    display_node=node,
                    output=ui,
                    prompt_id=self.prompt_id,
                )
            )
        return frames

    def _end(self, job: wf.Job) -> list[Frame]:
        self.done = True
        prompt = self.prompt_id
        frames: list[Frame] = []
        if job.status == wf.JOB_STATUS_COMPLETED:
            frames.append(
                message("execution_success", prompt_id=prompt, timestamp=_now_ms())
            )
        elif job.status == wf.JOB_STATUS_CANCELLED:
            frames.append(
                message(
                    "execution_interrupted",
                    prompt_id=prompt,
                    node_id=self._node or None,
                    node_type=self._class_type or None,
                    executed=list(self._executed),
                    timestamp=_now_ms(),
                )
            )
        else:
            # The failing node was executing, whether or not a progress update
            # said so before the job ended.
            if job.error.node_id:
                frames.extend(self._enter(job.error.node_id, job.error.class_type))
            frames.append(error_payload(prompt, job, list(self._executed)))
        return [
            *frames,
            QueueMoved(),
            message("executing", node=None, prompt_id=prompt),
        ]
