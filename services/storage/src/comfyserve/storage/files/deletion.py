"""Deleting files without a lock held while the store is called.

Rows are claimed (state `deleting`: gone for every read, refused for
re-registration) in a short transaction; their objects are deleted outside it
(unless a live row minted from a hash still names one), then the rows whose
object is gone. `DeleteFile`, retention and fencing all end
in `purge`.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from datetime import datetime

import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from comfyserve.runtime.database import autocommit_session
from comfyserve.storage.clock import utcnow
from comfyserve.storage.errors import FileNotFound
from comfyserve.storage.files import repository
from comfyserve.storage.files.models import PurgeReport, StoredFile
from comfyserve.storage.files.reads import parse_file_id
from comfyserve.storage.objects import ObjectStore, ObjectStoreError

log = structlog.get_logger(__name__)


class DeletionService:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        store: ObjectStore,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._sessions = sessions
        self._store = store
        self._clock = clock

    async def delete_file(self, tenant_id: str, file_id: str) -> None:
        parsed = parse_file_id(file_id)
        # The claim commits before the store is called: the file is gone for every
        # read, and a re-registration of the same output slot is refused, while
        # the object goes without a lock held.
        async with self._sessions.begin() as session:
            row = await repository.claim(session, tenant_id, parsed, now=self._clock())
        if row is None:
            raise FileNotFound(file_id)
        await self.purge([row])
        log.info("storage.file.deleted", file_id=file_id, tenant_id=tenant_id)

    async def purge(self, rows: Sequence[StoredFile]) -> PurgeReport:
        """Deletes the objects of rows claimed `deleting`, then those rows.

        Never raises for the store: a row whose object stays is left `deleting`,
        and retention retries it.
        """
        gone: list[uuid.UUID] = []
        # A row minted from a hash shares its source's object: the object stays
        # while another live row names it. The claim committed first, so a
        # mint racing it either locked the source before (and is seen here)
        # or found it claimed and minted over nothing of it.
        async with autocommit_session(self._sessions) as session:
            shared = await repository.keys_still_used(
                session, sorted({row.key for row in rows})
            )
        for row in rows:
            if row.key in shared:
                gone.append(row.id)
                continue
            try:
                await self._store.delete(row.key)
            except ObjectStoreError as error:
                log.warning(
                    "storage.file.delete_failed", file_id=str(row.id), error=str(error)
                )
                continue
            gone.append(row.id)
        if gone:
            async with self._sessions.begin() as session:
                await repository.delete_claimed(session, gone)
        return PurgeReport(deleted=len(gone), failed=len(rows) - len(gone))
