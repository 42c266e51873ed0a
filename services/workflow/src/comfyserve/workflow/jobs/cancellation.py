"""Cancelling a job on a client's request. No transport types."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import structlog
from sqlalchemy.ext.asyncio import AsyncEngine

from comfyserve.workflow.errors import JobNotFoundError
from comfyserve.workflow.jobs import repository
from comfyserve.workflow.jobs.models import JobRecord
from comfyserve.workflow.jobs.reads import JobReader, parse_job_id, require_tenant
from comfyserve.workflow.jobs.state import request_cancel
from comfyserve.workflow.jobs.transitions import count_transition, persist_transition
from comfyserve.workflow.telemetry import Metrics

log = structlog.get_logger(__name__)


class CancelService:
    def __init__(
        self,
        *,
        engine: AsyncEngine,
        reader: JobReader,
        metrics: Metrics,
        source: str,
        clock: Callable[[], datetime],
    ) -> None:
        self._engine = engine
        self._reader = reader
        self._metrics = metrics
        self._source = source
        self._clock = clock

    async def cancel(self, tenant_id: str, job_id: str) -> JobRecord:
        """A pending job ends at once; a running one is flagged and its worker
        told (by broadcast, and by its next lease renewal)."""
        require_tenant(tenant_id)
        job_uuid = parse_job_id(job_id)
        now = self._clock()
        async with self._engine.connect() as conn, conn.begin():
            job = await repository.get_job(
                conn, job_uuid, tenant_id=tenant_id, for_update=True, with_graph=False
            )
            if job is None:
                raise JobNotFoundError(job_id)
            transition = request_cancel(job, now)
            await persist_transition(
                conn,
                job.status,
                transition,
                now=now,
                source=self._source,
                cancel_reason="cancelled by the client",
            )
        count_transition(self._metrics, job.status, transition)
        log.info(
            "workflow.job.cancel",
            job_id=job_id,
            status=transition.job.status.value,
            ignored=transition.ignored,
        )
        return await self._reader.get(tenant_id, job_id)
