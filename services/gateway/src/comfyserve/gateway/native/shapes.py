"""Our job records in the shapes of ComfyUI's native API (API.md §B.1): queue
items, history entries with their status messages, output file items and the
G3 `/api/jobs` summaries. Pure translation, no I/O."""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from comfyserve.contracts.pb.workflow.v1 import workflow_pb2 as wf

# The G3 statuses of `/api/jobs`; expired jobs are failures there.
JOB_STATUSES = ("pending", "in_progress", "completed", "failed", "cancelled")
_JOB_STATUS = {
    wf.JOB_STATUS_PENDING: "pending",
    wf.JOB_STATUS_RUNNING: "in_progress",
    wf.JOB_STATUS_COMPLETED: "completed",
    wf.JOB_STATUS_FAILED: "failed",
    wf.JOB_STATUS_EXPIRED: "failed",
    wf.JOB_STATUS_CANCELLED: "cancelled",
}
STATUS_FILTERS: dict[str, list[wf.JobStatus.ValueType]] = {
    "pending": [wf.JOB_STATUS_PENDING],
    "in_progress": [wf.JOB_STATUS_RUNNING],
    "completed": [wf.JOB_STATUS_COMPLETED],
    "failed": [wf.JOB_STATUS_FAILED, wf.JOB_STATUS_EXPIRED],
    "cancelled": [wf.JOB_STATUS_CANCELLED],
}
_FINAL = frozenset(
    {
        wf.JOB_STATUS_COMPLETED,
        wf.JOB_STATUS_FAILED,
        wf.JOB_STATUS_EXPIRED,
        wf.JOB_STATUS_CANCELLED,
    }
)
# The history key of each output kind, as ComfyUI's save nodes name them.
_MEDIA_KEY = {
    wf.OUTPUT_KIND_IMAGE: "images",
    wf.OUTPUT_KIND_VIDEO: "gifs",
    wf.OUTPUT_KIND_AUDIO: "audio",
    wf.OUTPUT_KIND_TEXT: "text",
    wf.OUTPUT_KIND_LATENT: "latents",
    wf.OUTPUT_KIND_FILE: "files",
}
_PREVIEWABLE = frozenset({"images", "gifs", "audio"})


def job_status(job: wf.Job) -> str:
    return _JOB_STATUS.get(job.status, "pending")


def _ms(stamp: Timestamp) -> int | None:
    return stamp.ToMilliseconds() if stamp.seconds or stamp.nanos else None


def _when(stamp: Timestamp) -> datetime | None:
    return stamp.ToDatetime(tzinfo=UTC) if stamp.seconds or stamp.nanos else None


def graph(job: wf.Job) -> dict[str, Any]:
    if not job.workflow_json:
        return {}
    value = json.loads(job.workflow_json)
    return value if isinstance(value, dict) else {}


def outputs_to_execute(prompt: dict[str, Any]) -> list[str]:
    """The graph's sinks: nodes no other node takes an input from, which is
    what ComfyUI's output nodes are in an API-format graph."""
    linked = {
        str(value[0])
        for node in prompt.values()
        if isinstance(node, dict)
        for value in (node.get("inputs") or {}).values()
        if isinstance(value, list) and len(value) == 2
    }
    return [node_id for node_id in prompt if node_id not in linked]


def extra_data(job: wf.Job) -> dict[str, Any]:
    """What ComfyUI keeps of `extra_data`: only the client id and the time
    are stored here, so partner keys can never come back."""
    data: dict[str, Any] = {"create_time": _ms(job.created_at)}
    if job.client_id:
        data["client_id"] = job.client_id
    return data


def queue_item(job: wf.Job) -> list[Any]:
    """`[number, prompt_id, prompt, extra_data, outputs_to_execute]`."""
    prompt = graph(job)
    return [job.number, job.id, prompt, extra_data(job), outputs_to_execute(prompt)]


def output_items(job: wf.Job) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """Outputs keyed by node id and media key; each file is served by `/view`
    under the job's own subfolder."""
    found: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for output in sorted(job.outputs, key=lambda item: (item.node_id, item.index)):
        directory, _, name = output.filename.rpartition("/")
        item = {
            "filename": name,
            "subfolder": f"{job.id}/{directory}" if directory else job.id,
            "type": "output",
        }
        key = _MEDIA_KEY.get(output.kind, "files")
        found.setdefault(output.node_id, {}).setdefault(key, []).append(item)
    return found


def in_history(job: wf.Job) -> bool:
    """Ended jobs that ran, or failed: a prompt cancelled while it waited
    leaves no history, as one deleted from ComfyUI's queue."""
    if job.status not in _FINAL:
        return False
    return job.HasField("started_at") or job.status != wf.JOB_STATUS_CANCELLED


def _message(kind: str, job: wf.Job, at: datetime | None, **data: Any) -> list[Any]:
    stamp = int(at.timestamp() * 1000) if at is not None else None
    return [kind, {"prompt_id": job.id, **data, "timestamp": stamp}]


def execution_error(job: wf.Job, executed: Iterable[str]) -> dict[str, Any]:
    """The data of a failed job's `execution_error` (§B.5.3) but its
    `prompt_id` and `timestamp`: /history and /ws both send this, so a client
    reads the same failure either way.

    The executor keeps ComfyUI's exception as `<type>: <message>`, so the two
    are split back apart; `traceback` is ComfyUI's list of lines, each with
    its newline, and `executed` the nodes done before the failing one."""
    error = job.error
    kind, sep, text = error.message.partition(": ")
    if error.code != "node_execution_error" or not sep or " " in kind:
        kind, text = error.code or "Error", error.message
    return {
        "node_id": error.node_id or None,
        "node_type": error.class_type or None,
        "executed": [node for node in executed if node != error.node_id],
        "exception_message": text,
        "exception_type": kind,
        "traceback": error.traceback.splitlines(keepends=True),
        "current_inputs": {},
        "current_outputs": [],
    }


def _final_message(job: wf.Job, executed: list[str]) -> list[Any]:
    ended = _when(job.completed_at)
    if job.status == wf.JOB_STATUS_COMPLETED:
        return _message("execution_success", job, ended)
    if job.status == wf.JOB_STATUS_CANCELLED:
        node = {"node_id": job.progress.node_id, "node_type": job.progress.class_type}
        return _message("execution_interrupted", job, ended, **node, executed=executed)
    return _message("execution_error", job, ended, **execution_error(job, executed))


def history_status(job: wf.Job) -> dict[str, Any]:
    executed = sorted(output_items(job))
    messages = []
    if job.HasField("started_at"):
        started = _when(job.started_at)
        messages += [
            _message("execution_start", job, started),
            _message("execution_cached", job, started, nodes=[]),
        ]
    messages.append(_final_message(job, executed))
    success = job.status == wf.JOB_STATUS_COMPLETED
    return {
        "status_str": "success" if success else "error",
        "completed": success,
        "messages": messages,
    }


def history_entry(job: wf.Job) -> dict[str, Any]:
    item = queue_item(job)
    return {
        "prompt": item,
        "outputs": output_items(job),
        "status": history_status(job),
        "meta": {
            node_id: {
                "node_id": node_id,
                "display_node": node_id,
                "parent_node": None,
                "real_node_id": node_id,
            }
            for node_id in item[4]
        },
    }


def _preview(outputs: dict[str, dict[str, list[dict[str, Any]]]]) -> dict[str, Any]:
    for node_id, media in outputs.items():
        for key, items in media.items():
            if key in _PREVIEWABLE and items:
                return {**items[0], "nodeId": node_id, "mediaType": key}
    return {}


def _pruned(values: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in values.items() if value is not None}


def job_summary(job: wf.Job) -> dict[str, Any]:
    """The G3 job summary; null fields are left out, as ComfyUI prunes them."""
    outputs = output_items(job)
    count = sum(len(items) for media in outputs.values() for items in media.values())
    ended = in_history(job)
    status = history_status(job) if ended else None
    error = None
    if status is not None and status["messages"][-1][0] == "execution_error":
        error = status["messages"][-1][1]
    return _pruned(
        {
            "id": job.id,
            "status": job_status(job),
            "priority": job.number,
            "create_time": _ms(job.created_at),
            "execution_start_time": _ms(job.started_at) if ended else None,
            "execution_end_time": _ms(job.completed_at) if ended else None,
            "execution_error": error,
            "outputs_count": count,
            "previewable_outputs_count": sum(
                len(items)
                for media in outputs.values()
                for key, items in media.items()
                if key in _PREVIEWABLE
            ),
            "preview_output": _preview(outputs) or None,
            "completion_status": status["status_str"] if status else None,
            "has_errors": error is not None,
            "execution_error_count": int(error is not None),
        }
    )


def job_detail(job: wf.Job) -> dict[str, Any]:
    summary = job_summary(job)
    ended = in_history(job)
    return {
        **summary,
        "outputs": output_items(job),
        "execution_status": history_status(job) if ended else None,
        "workflow": {"prompt": graph(job), "extra_data": extra_data(job)},
        "execution_errors": [summary["execution_error"]]
        if "execution_error" in summary
        else [],
    }


def history_page(jobs: Iterable[wf.Job]) -> dict[str, Any]:
    """`{prompt_id: entry}` oldest first, for ended jobs that ran."""
    return {job.id: history_entry(job) for job in jobs if in_history(job)}
