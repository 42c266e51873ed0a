"""Retention: expired files, abandoned uploads and stalled deletions lose their
object, then their row; a background loop runs it with the fence sweep."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from comfyserve.storage.clock import utcnow
from comfyserve.storage.fences.service import FenceService
from comfyserve.storage.files import repository
from comfyserve.storage.files.deletion import DeletionService
from comfyserve.storage.files.models import PurgeReport, StoredFile
from comfyserve.storage.telemetry import Metrics

log = structlog.get_logger(__name__)

# An upload not completed within a day is abandoned.
PENDING_UPLOAD_MAX_AGE = timedelta(days=1)
# A row left `deleting` this long lost its deleter (crash, store outage).
DELETION_RETRY_AFTER = timedelta(minutes=5)
RETENTION_BATCH = 100


class RetentionService:
    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], deletion: DeletionService
    ) -> None:
        self._sessions = sessions
        self._deletion = deletion

    async def sweep_once(self, now: datetime) -> PurgeReport:
        """Deletes expired files, abandoned uploads and stalled deletions.

        Each batch is claimed (marked `deleting`) in a short transaction; objects
        are then deleted outside it, and the rows whose object is gone after them.
        A row whose object could not be deleted is retried after
        `DELETION_RETRY_AFTER`.
        """
        deleted = failed = 0
        while True:
            rows = await self._claim_batch(now)
            report = await self._deletion.purge(rows)
            deleted += report.deleted
            failed += report.failed
            if len(rows) < RETENTION_BATCH or report.failed:
                break
        if deleted or failed:
            log.info("storage.retention.swept", deleted=deleted, failed=failed)
        return PurgeReport(deleted=deleted, failed=failed)

    async def _claim_batch(self, now: datetime) -> list[StoredFile]:
        # One query per reason, each served by an index of its own.
        async with self._sessions.begin() as session:
            rows = await repository.claim_expired(
                session, now=now, limit=RETENTION_BATCH
            )
            if len(rows) < RETENTION_BATCH:
                rows += await repository.claim_abandoned(
                    session,
                    created_before=now - PENDING_UPLOAD_MAX_AGE,
                    now=now,
                    limit=RETENTION_BATCH - len(rows),
                )
            if len(rows) < RETENTION_BATCH:
                rows += await repository.claim_stalled(
                    session,
                    deleting_before=now - DELETION_RETRY_AFTER,
                    now=now,
                    limit=RETENTION_BATCH - len(rows),
                )
        return rows


async def sweep_forever(
    retention: RetentionService,
    fences: FenceService,
    interval: float,
    metrics: Metrics,
) -> None:
    """Each round: expired files and abandoned uploads, then late uploads of
    ended jobs."""
    while True:
        try:
            report = await retention.sweep_once(utcnow())
            metrics.retention_deleted.inc(report.deleted)
            metrics.retention_failed.inc(report.failed)
            swept = await fences.sweep_once(utcnow())
            metrics.orphans_deleted.inc(swept.orphans_deleted)
        except Exception:
            # A database or store outage must not end the sweeps; the next round
            # picks up whatever this one left.
            log.exception("storage.retention.round_failed")
        await asyncio.sleep(interval)
