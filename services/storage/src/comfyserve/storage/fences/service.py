"""Fencing of job outputs: when a job ends, only the attempt that ended it keeps
its outputs, and no attempt may register new ones."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from comfyserve.runtime.database import autocommit_session
from comfyserve.storage.clock import utcnow
from comfyserve.storage.fences import repository
from comfyserve.storage.fences.models import (
    FenceReport,
    FinishedJob,
    JobFence,
    SweepReport,
)
from comfyserve.storage.files import repository as files
from comfyserve.storage.files.deletion import DeletionService
from comfyserve.storage.files.models import FileState
from comfyserve.storage.files.naming import job_output_prefix, key_segment
from comfyserve.storage.files.settling import OutputSettler
from comfyserve.storage.objects import ObjectStore, ObjectStoreError
from comfyserve.storage.settings import Settings

log = structlog.get_logger(__name__)

SWEEP_BATCH = 100
# A PUT that started just before its URL expired may still be streaming, and the
# store's clock may run behind ours.
LATE_PUT_GRACE = timedelta(minutes=1)


class FenceService:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        store: ObjectStore,
        deletion: DeletionService,
        settings: Settings,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._sessions = sessions
        self._store = store
        self._deletion = deletion
        self._settings = settings
        self._clock = clock
        self._settler = OutputSettler(sessions, store, settings.max_upload_bytes)

    async def on_job_finished(self, finished: FinishedJob) -> FenceReport:
        """Records the job's end, deletes the outputs of every other attempt and
        makes the ending attempt's uploaded outputs ready.

        Idempotent: a redelivered event finds the fence, nothing left to delete
        and nothing left to settle. Objects that could not be deleted stay
        claimed for retention to retry. Raises `ObjectStoreError` when the store
        cannot be asked about the outputs, so that the event is retried.
        """
        key_segment("job_id", finished.job_id)
        key_segment("tenant_id", finished.tenant_id)
        now = self._clock()
        async with self._sessions.begin() as session:
            # Waits for registrations of the job in flight, and holds new ones
            # until the fence is visible to them.
            await repository.lock_job(session, finished.job_id, exclusive=True)
            fence = await repository.record(
                session,
                JobFence(
                    job_id=finished.job_id,
                    tenant_id=finished.tenant_id,
                    attempt=finished.attempt,
                    ended_at=now,
                ),
            )
            superseded = await files.claim_superseded(
                session, job_id=fence.job_id, attempt=fence.attempt, now=now
            )
        purged = await self._deletion.purge(superseded)
        # After the fence no registration of the job can begin, so the pending
        # outputs read here are all its ending attempt will ever have.
        async with autocommit_session(self._sessions) as session:
            pending = await files.pending_outputs(
                session, job_id=fence.job_id, attempt=fence.attempt
            )
        settled = await self._settler.settle(pending)
        ready = sum(1 for row in settled if row.state == FileState.READY.value)
        log.info(
            "storage.job.fenced",
            job_id=fence.job_id,
            tenant_id=fence.tenant_id,
            attempt=fence.attempt,
            deleted=purged.deleted,
            failed=purged.failed,
            settled=ready,
        )
        return FenceReport(
            attempt=fence.attempt,
            deleted=purged.deleted,
            failed=purged.failed,
            settled=ready,
        )

    async def sweep_once(self, now: datetime) -> SweepReport:
        """Removes objects that PUTs through URLs issued before a job's fence
        landed after it: once every such URL has expired, anything under the
        job's prefix that no output row of the winning attempt owns."""
        ended_before = (
            now - timedelta(seconds=self._settings.upload_url_ttl_seconds)
        ) - LATE_PUT_GRACE
        swept = orphans = failed = 0
        while True:
            async with autocommit_session(self._sessions) as session:
                due = await repository.unswept(
                    session, ended_before=ended_before, limit=SWEEP_BATCH
                )
            for fence in due:
                try:
                    orphans += await self._sweep(fence, now)
                except ObjectStoreError as error:
                    failed += 1
                    log.warning(
                        "storage.fence.sweep_failed",
                        job_id=fence.job_id,
                        error=str(error),
                    )
                else:
                    swept += 1
            if len(due) < SWEEP_BATCH or failed:
                break
        if swept or failed:
            log.info("storage.fence.swept", swept=swept, orphans=orphans, failed=failed)
        return SweepReport(swept=swept, orphans_deleted=orphans, failed=failed)

    async def _sweep(self, fence: JobFence, now: datetime) -> int:
        # No output row of the job can appear any more, so reading the owned keys
        # before listing the store misses nothing.
        async with autocommit_session(self._sessions) as session:
            owned = await files.output_keys(
                session, job_id=fence.job_id, attempt=fence.attempt
            )
        listed = await self._store.list_keys(
            job_output_prefix(fence.tenant_id, fence.job_id)
        )
        orphans = [key for key in listed if key not in owned]
        for key in orphans:
            await self._store.delete(key)
        async with self._sessions.begin() as session:
            await repository.mark_swept(session, fence.job_id, now=now)
        if orphans:
            log.info(
                "storage.fence.orphans_deleted",
                job_id=fence.job_id,
                count=len(orphans),
            )
        return len(orphans)
