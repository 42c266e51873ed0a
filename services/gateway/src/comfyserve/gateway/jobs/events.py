"""A job's event stream: WatchJob updates as the events the SSE routes send.

`status` when the rendered status changes, `output` once per file, `progress`
while it runs; every output goes out before the final `status`, after which
the stream ends. The REST and the Comfy API v2 streams share this loop and
differ only in how a job renders (`Rendering`).
"""

from __future__ import annotations

from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Awaitable,
    Callable,
    Collection,
    Sequence,
)
from contextlib import aclosing
from dataclasses import dataclass

from pydantic import BaseModel

from comfyserve.contracts.pb.workflow.v1 import workflow_pb2 as wf
from comfyserve.gateway.jobs import translate
from comfyserve.gateway.jobs.models import ProgressEvent, StatusEvent

# The outputs of the job as a route shows them, one per file, in order.
RenderOutputs = Callable[[wf.Job, list[wf.OutputFile]], Awaitable[Sequence[BaseModel]]]
# The job's latest preview (`job.progress.preview_file_id`) as a route shows
# it; None when it cannot be had.
RenderPreview = Callable[[wf.Job], Awaitable[BaseModel | None]]


@dataclass(frozen=True, slots=True)
class JobEvent:
    """One server-sent event: its name, its JSON body and, for an output, the
    file id that lets a reconnecting client say what it already has."""

    name: str
    data: BaseModel
    id: str | None = None


def _rest_status(job: wf.Job) -> BaseModel:
    return StatusEvent(
        status=translate.job_status(job),
        queue_position=translate.queue_position(job),
        error=translate.job_error(job),
    )


def _rest_progress(job: wf.Job) -> BaseModel | None:
    progress = translate.job_progress(job)
    return None if progress is None else ProgressEvent(progress=progress)


@dataclass(frozen=True, slots=True)
class Rendering:
    """How a surface shows a job's status and progress in its events."""

    status: Callable[[wf.Job], BaseModel] = _rest_status
    progress: Callable[[wf.Job], BaseModel | None] = _rest_progress
    # Send the latest progress right after the first status of a running job.
    progress_on_connect: bool = False


REST = Rendering()


async def job_events(
    first: wf.JobUpdate,
    updates: AsyncGenerator[wf.JobUpdate, None],
    outputs: RenderOutputs,
    rendering: Rendering = REST,
    delivered: Collection[str] = (),
    preview: RenderPreview | None = None,
) -> AsyncIterator[JobEvent]:
    """The events of `first` and every update after it; closes `updates`.

    Outputs whose file ids are in `delivered` are not sent again. With
    `preview`, each new preview of a running job (the latest on connect) is a
    `preview` event after its progress.
    """
    sent_outputs = set(delivered)
    last_status: BaseModel | None = None
    last_preview = ""
    async with aclosing(updates):
        update: wf.JobUpdate | None = first
        while update is not None:
            job = update.job
            final = job.status in translate.FINAL_STATUSES
            status_event = JobEvent("status", rendering.status(job))
            if not final and status_event.data != last_status:
                yield status_event
                last_status = status_event.data
            # Every output goes out before the final status, including any
            # the service only lists on the job itself.
            fresh = [
                output
                for output in translate.unique_outputs(
                    [*update.new_outputs, *job.outputs]
                )
                if output.file_id not in sent_outputs
            ]
            for file, rendered in zip(fresh, await outputs(job, fresh), strict=True):
                sent_outputs.add(file.file_id)
                yield JobEvent("output", rendered, id=file.file_id)
            if final:
                yield status_event
                return
            progress = rendering.progress(job)
            wanted = update.kind == wf.UPDATE_KIND_PROGRESS or (
                rendering.progress_on_connect and update is first
            )
            if wanted and progress is not None:
                yield JobEvent("progress", progress)
            preview_id = job.progress.preview_file_id
            if preview is not None and preview_id and preview_id != last_preview:
                last_preview = preview_id
                shown = await preview(job)
                if shown is not None:
                    yield JobEvent("preview", shown)
            update = await anext(updates, None)
