"""`GET /api/v2/jobs/{id}/events`: the job's server-sent events (API.md §A.6).

The same WatchJob loop as the REST stream (`jobs.events`), rendered as v2
frames: a `status` snapshot first (then the latest `progress` if it runs),
`output` frames before the terminal `status`, then the stream closes.

Resume: each `output` frame carries its file id as `id:`, and no other frame
has one, so a client's Last-Event-ID is always the last output it received. A
reconnect naming it is not sent that output or any before it in the job's
order of outputs (the order they were stored in, which frames follow).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Header, Request
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.types import Receive, Scope, Send

from comfyserve.gateway.jobs import translate
from comfyserve.gateway.jobs.events import JobEvent, Rendering
from comfyserve.gateway.settings import Settings
from comfyserve.gateway.v2 import jobs_render
from comfyserve.gateway.v2.errors import TooManyStreamsError
from comfyserve.gateway.v2.jobs import ReadJobs
from comfyserve.gateway.v2.jobs_service import V2JobsService

router = APIRouter(prefix="/api/v2", include_in_schema=False)

# How long a client refused a stream should wait before it asks again.
STREAM_RETRY_AFTER_SECONDS = 5
V2_RENDERING = Rendering(
    status=jobs_render.status_frame,
    progress=jobs_render.progress,
    progress_on_connect=True,
)


class StreamSlots:
    """Open v2 event streams of this process, at most `limit` at once."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.open = 0

    def take(self) -> None:
        if self.open >= self.limit:
            raise TooManyStreamsError(
                "Too many event streams are open; poll the job instead",
                STREAM_RETRY_AFTER_SECONDS,
            )
        self.open += 1

    def give_back(self) -> None:
        self.open -= 1


async def _delivered(
    jobs: V2JobsService, job_id: str, last_event_id: str | None
) -> list[str]:
    """The outputs a client that saw `last_event_id` has; none if unknown."""
    if not last_event_id:
        return []
    order = [
        output.file_id
        for output in translate.unique_outputs((await jobs.get_raw(job_id)).outputs)
    ]
    if last_event_id not in order:
        return []
    return order[: order.index(last_event_id) + 1]


async def _frames(events: AsyncIterator[JobEvent]) -> AsyncIterator[ServerSentEvent]:
    async for event in events:
        yield ServerSentEvent(
            data=event.data.model_dump_json(), event=event.name, id=event.id
        )


class _HeldStream(EventSourceResponse):
    """An event stream that holds its slot exactly as long as it is served.

    The slot goes back when serving ends, however it ends: a frame generator's
    `finally` never runs for a stream that was never iterated (a HEAD request,
    a client gone before the first frame), so it cannot be what frees it.
    """

    def __init__(
        self, events: AsyncIterator[JobEvent], slots: StreamSlots, ping: float
    ) -> None:
        super().__init__(
            _frames(events),
            ping=ping,
            ping_message_factory=lambda: ServerSentEvent(comment="keepalive"),
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
        self._slots = slots

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._slots.give_back()


@router.get("/jobs/{job_id}/events")
async def job_events(
    job_id: str,
    jobs: ReadJobs,
    request: Request,
    last_event_id: Annotated[str | None, Header()] = None,
) -> EventSourceResponse:
    settings: Settings = request.app.state.settings
    slots: StreamSlots = request.app.state.v2_streams
    slots.take()
    try:
        delivered = await _delivered(jobs, job_id, last_event_id)
        events = await jobs.watch(job_id, V2_RENDERING, delivered)
    except BaseException:
        slots.give_back()
        raise
    return _HeldStream(events, slots, settings.sse_keepalive_seconds)
