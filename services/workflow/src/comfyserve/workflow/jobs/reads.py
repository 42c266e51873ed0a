"""Reading jobs: get, list and watch. No transport types."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any
from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from comfyserve.runtime.database import autocommit
from comfyserve.workflow.errors import InvalidArgumentError, JobNotFoundError
from comfyserve.workflow.jobs import queue_repository, repository
from comfyserve.workflow.jobs.cursor import Cursor
from comfyserve.workflow.jobs.fleet_catalog import fleet_object_info
from comfyserve.workflow.jobs.models import JobOrder, JobRecord, JobStatus
from comfyserve.workflow.jobs.watch import ChannelListener

DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100


class UpdateKind(StrEnum):
    STATUS = "status"
    PROGRESS = "progress"
    OUTPUT = "output"


@dataclass(frozen=True, slots=True)
class JobPage:
    jobs: list[JobRecord]
    next_cursor: str | None
    # Set when asked for: the jobs of every page together.
    total: int | None = None


@dataclass(frozen=True, slots=True)
class JobUpdate:
    job: JobRecord
    kind: UpdateKind
    new_outputs: list[dict[str, Any]]


def parse_job_id(job_id: str) -> UUID:
    """A malformed id names no job, so it is NOT_FOUND like any unknown one."""
    try:
        return UUID(job_id)
    except ValueError:
        raise JobNotFoundError(job_id) from None


def require_tenant(tenant_id: str) -> None:
    if not tenant_id:
        raise InvalidArgumentError("tenant_id", "is required")


class JobReader:
    def __init__(self, *, engine: AsyncEngine, listener: ChannelListener) -> None:
        self._engine = engine
        self._listener = listener

    async def get(
        self, tenant_id: str, job_id: str, *, with_graph: bool = True
    ) -> JobRecord:
        require_tenant(tenant_id)
        async with autocommit(self._engine) as conn:
            return await self._read(conn, tenant_id, parse_job_id(job_id), with_graph)

    async def _read(
        self, conn: AsyncConnection, tenant_id: str, job_id: UUID, with_graph: bool
    ) -> JobRecord:
        job = await repository.get_job(
            conn, job_id, tenant_id=tenant_id, with_graph=with_graph
        )
        if job is None:
            raise JobNotFoundError(str(job_id))
        if job.status is JobStatus.PENDING:
            position = await queue_repository.queue_position(conn, job)
            return replace(job, queue_position=position)
        return job

    async def list_jobs(
        self,
        tenant_id: str,
        *,
        page_size: int,
        cursor: str,
        statuses: Sequence[JobStatus],
        order: JobOrder = JobOrder.NEWEST,
        offset: int = 0,
        with_graph: bool = False,
        with_total: bool = False,
    ) -> JobPage:
        """Newest first by cursor, or in another `order` by offset; listed jobs
        leave out their graph unless asked for it."""
        require_tenant(tenant_id)
        if page_size < 0:
            raise InvalidArgumentError("page_size", "must not be negative")
        limit = min(page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
        if order is JobOrder.NEWEST and offset:
            raise InvalidArgumentError("offset", "needs an order other than newest")
        if order is not JobOrder.NEWEST and cursor:
            raise InvalidArgumentError("cursor", "pages only the newest-first order")
        if offset < 0:
            raise InvalidArgumentError("offset", "must not be negative")
        async with autocommit(self._engine) as conn:
            if order is JobOrder.NEWEST:
                rows = await repository.list_jobs(
                    conn,
                    tenant_id,
                    statuses=statuses,
                    after=Cursor.decode(cursor) if cursor else None,
                    limit=limit + 1,
                    with_graph=with_graph,
                )
            else:
                rows = await repository.list_by_offset(
                    conn,
                    tenant_id,
                    statuses=statuses,
                    order=order,
                    offset=offset,
                    limit=limit + 1,
                    with_graph=with_graph,
                )
            total = (
                await repository.count_jobs(conn, tenant_id, statuses)
                if with_total
                else None
            )
        page = rows[:limit]
        next_cursor = None
        if len(rows) > limit and order is JobOrder.NEWEST:
            last = page[-1]
            next_cursor = Cursor(last.created_at, last.id).encode()
        return JobPage(jobs=page, next_cursor=next_cursor, total=total)

    async def object_info(self, class_type: str | None) -> dict[str, Any]:
        """The fleet's node catalog, the same for every tenant."""
        async with autocommit(self._engine) as conn:
            return await fleet_object_info(conn, class_type)

    async def watch(self, tenant_id: str, job_id: str) -> AsyncIterator[JobUpdate]:
        """The current state, then one update per observed change, ending after
        a final status. Changes are pushed by the listener, never polled; the
        job is read without its graph each time."""
        require_tenant(tenant_id)
        job_uuid = parse_job_id(job_id)
        # Subscribe before the first read so no change falls in between.
        with self._listener.subscribe(str(job_uuid)) as changed:
            job = await self.get(tenant_id, job_id, with_graph=False)
            yield JobUpdate(job=job, kind=UpdateKind.STATUS, new_outputs=[])
            seen = {output["file_id"] for output in job.outputs}
            while not job.status.is_final:
                await changed.wait()
                changed.clear()
                current = await self.get(tenant_id, job_id, with_graph=False)
                new_outputs = [o for o in current.outputs if o["file_id"] not in seen]
                kind = _update_kind(job, current, new_outputs)
                job = current
                if kind is None:
                    continue
                seen.update(output["file_id"] for output in new_outputs)
                yield JobUpdate(job=job, kind=kind, new_outputs=new_outputs)


def _update_kind(
    before: JobRecord, after: JobRecord, new_outputs: list[dict[str, Any]]
) -> UpdateKind | None:
    if (
        after.status is not before.status
        or after.cancel_requested != before.cancel_requested
    ):
        return UpdateKind.STATUS
    if new_outputs:
        return UpdateKind.OUTPUT
    if after.progress != before.progress or after.attempt != before.attempt:
        return UpdateKind.PROGRESS
    return None
