"""Files by content and by name: a tenant's file with a BLAKE3 hash, a new
file minted over that file's object, and the file at a native ComfyUI name.

Each lookup sees the tenant's own ready files only; another tenant's file with
the same bytes or name answers exactly like none.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime, timedelta

import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from comfyserve.runtime.database import autocommit_session
from comfyserve.storage.clock import utcnow
from comfyserve.storage.errors import InvalidArgument, NoSuchFile
from comfyserve.storage.files import lookup_repository, repository
from comfyserve.storage.files.models import (
    FilePurpose,
    FileState,
    Minted,
    StoredFile,
)
from comfyserve.storage.files.naming import (
    key_segment,
    normalise_blake3,
    normalise_folder,
    safe_path,
)
from comfyserve.storage.settings import Settings

log = structlog.get_logger(__name__)


class LookupService:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        settings: Settings,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._sessions = sessions
        self._settings = settings
        self._clock = clock

    async def by_hash(self, tenant_id: str, blake3: str) -> StoredFile:
        digest = normalise_blake3(blake3)
        async with autocommit_session(self._sessions) as session:
            row = await lookup_repository.newest_by_hash(session, tenant_id, digest)
        if row is None:
            raise NoSuchFile(f"no file with hash {digest}")
        return row

    async def named(self, tenant_id: str, folder: str, path: str) -> StoredFile:
        where, name = normalise_folder(folder), safe_path(path)
        async with autocommit_session(self._sessions) as session:
            row = await lookup_repository.newest_named(session, tenant_id, where, name)
        if row is None:
            raise NoSuchFile(f"no file {where}/{name}")
        return row

    async def mint(
        self,
        tenant_id: str,
        blake3: str,
        *,
        folder: str | None,
        path: str | None,
        ttl_seconds: int | None,
    ) -> Minted:
        """A ready input file over the object of the tenant's file with this hash."""
        tenant_id = key_segment("tenant_id", tenant_id)
        digest = normalise_blake3(blake3)
        where = normalise_folder(folder)
        name = safe_path(path) if path else None
        if ttl_seconds is not None and ttl_seconds <= 0:
            raise InvalidArgument("ttl_seconds", "must be positive")
        async with self._sessions.begin() as session:
            source = await lookup_repository.newest_by_hash(
                session, tenant_id, digest, lock=True
            )
            if source is None:
                raise NoSuchFile(f"no file with hash {digest}")
            name = name or source.path or source.filename
            existing = await lookup_repository.newest_named(
                session, tenant_id, where, name, blake3=digest
            )
            if existing is not None:
                return Minted(file=existing, created_new=False)
            row = self._minted(source, where, name, ttl_seconds)
            await repository.add(session, row)
        log.info(
            "storage.file.minted",
            file_id=str(row.id),
            source_id=str(source.id),
            tenant_id=tenant_id,
        )
        return Minted(file=row, created_new=True)

    def _minted(
        self, source: StoredFile, folder: str, path: str, ttl_seconds: int | None
    ) -> StoredFile:
        now = self._clock()
        ttl = ttl_seconds or self._settings.input_ttl_seconds
        return StoredFile(
            id=uuid.uuid4(),
            tenant_id=source.tenant_id,
            purpose=FilePurpose.INPUT.value,
            filename=path.rsplit("/", 1)[-1],
            content_type=source.content_type,
            size=source.size,
            sha256=source.sha256,
            blake3=source.blake3,
            bucket=source.bucket,
            # The source's object: bytes never move, and deletion keeps an
            # object while any live row names it.
            key=source.key,
            width=source.width,
            height=source.height,
            folder=folder,
            path=path,
            state=FileState.READY.value,
            created_at=now,
            expires_at=now + timedelta(seconds=ttl),
        )
