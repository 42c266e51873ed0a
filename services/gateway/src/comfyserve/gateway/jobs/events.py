"""A job's event stream: WatchJob updates as the events the SSE route sends.

`status` when the status or queue position changes, `output` once per file,
`progress` while it runs; every output goes out before the final `status`,
after which the stream ends.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from contextlib import aclosing
from dataclasses import dataclass

from pydantic import BaseModel

from comfyserve.contracts.pb.workflow.v1 import workflow_pb2 as wf
from comfyserve.gateway.jobs import translate
from comfyserve.gateway.jobs.models import JobStatus, Output, ProgressEvent, StatusEvent

# The outputs with their download URLs, as the job routes show them.
OutputsWithUrls = Callable[[list[wf.OutputFile]], Awaitable[list[Output]]]


@dataclass(frozen=True, slots=True)
class JobEvent:
    """One server-sent event: its name and its JSON body."""

    name: str
    data: BaseModel


async def job_events(
    first: wf.JobUpdate,
    updates: AsyncGenerator[wf.JobUpdate, None],
    outputs: OutputsWithUrls,
) -> AsyncIterator[JobEvent]:
    """The events of `first` and every update after it; closes `updates`."""
    sent_outputs: set[str] = set()
    last_status: tuple[JobStatus, int | None] | None = None
    async with aclosing(updates):
        update: wf.JobUpdate | None = first
        while update is not None:
            job = update.job
            final = job.status in translate.FINAL_STATUSES
            status = (translate.job_status(job), translate.queue_position(job))
            status_event = JobEvent(
                "status",
                StatusEvent(
                    status=status[0],
                    queue_position=status[1],
                    error=translate.job_error(job),
                ),
            )
            if not final and status != last_status:
                yield status_event
                last_status = status
            # Every output goes out before the final status, including any
            # the service only lists on the job itself.
            fresh = [
                output
                for output in translate.unique_outputs(
                    [*update.new_outputs, *job.outputs]
                )
                if output.file_id not in sent_outputs
            ]
            for output in await outputs(fresh):
                sent_outputs.add(output.file_id)
                yield JobEvent("output", output)
            if final:
                yield status_event
                return
            progress = translate.job_progress(job)
            if update.kind == wf.UPDATE_KIND_PROGRESS and progress is not None:
                yield JobEvent("progress", ProgressEvent(progress=progress))
            update = await anext(updates, None)
