"""Settling job outputs: a pending output whose object is in the store with its
declared size becomes ready.

The executor never completes an output (ADR 0008): it registers it, PUTs the
bytes and reports the job's end. The output is settled when its job's end is
consumed (the winning attempt's outputs, by the fence) or when a read meets it
first, since a reader may ask right after the job's end was announced.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from comfyserve.runtime.database import autocommit_session
from comfyserve.storage.files import repository
from comfyserve.storage.files.models import FilePurpose, FileState, StoredFile
from comfyserve.storage.objects import ObjectStat, ObjectStore

log = structlog.get_logger(__name__)


def unsettled(row: StoredFile) -> bool:
    return (
        row.purpose == FilePurpose.OUTPUT.value and row.state == FileState.PENDING.value
    )


class OutputSettler:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        store: ObjectStore,
        max_upload_bytes: int,
    ) -> None:
        self._sessions = sessions
        self._store = store
        self._max_upload_bytes = max_upload_bytes

    async def settle(self, rows: Sequence[StoredFile]) -> list[StoredFile]:
        """`rows`, each pending output whose object arrived now ready; the others
        as they were. Raises `ObjectStoreError` when the store cannot be asked.

        The objects are checked outside any transaction; each update applies
        only to the registration that was read, so an output registered again
        meanwhile (a retried upload of its attempt) stays pending.
        """
        pending = [row for row in rows if unsettled(row)]
        if not pending:
            return list(rows)
        found = await asyncio.gather(*(self._store.stat(row.key) for row in pending))
        arrived = [
            row
            for row, stat in zip(pending, found, strict=True)
            if self._complete(row, stat)
        ]
        if not arrived:
            return list(rows)
        settled: dict[object, StoredFile] = {}
        # Each row's update stands alone, so none waits on a transaction: this
        # runs on a reader's request, often as a job's output event is sent.
        async with autocommit_session(self._sessions) as session:
            for row in arrived:
                done = await repository.mark_ready(
                    session, row, size=row.size, width=None, height=None
                )
                if done is not None:
                    settled[done.id] = done
        log.info("storage.outputs.settled", count=len(settled))
        return [settled.get(row.id, row) for row in rows]

    def _complete(self, row: StoredFile, stat: ObjectStat | None) -> bool:
        if stat is None:
            return False
        # S3 writes an object whole, so a size other than the declared one is an
        # upload that broke the rules, never one still streaming; it stays
        # pending and retention removes it.
        if stat.size != row.size or stat.size > self._max_upload_bytes:
            log.warning(
                "storage.output.size_mismatch",
                file_id=str(row.id),
                declared=row.size,
                found=stat.size,
            )
            return False
        return True
