"""Reading files: one file, its download URLs, a tenant's files page by page,
and what each tenant stores.

Also what an id names for a tenant, which every call that takes one shares: a
file of another tenant, an unknown id and a malformed one all name no file.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from comfyserve.contracts.limits import DOWNLOAD_URLS_PER_CALL
from comfyserve.runtime.database import autocommit_session
from comfyserve.storage.clock import utcnow
from comfyserve.storage.errors import (
    FileNotFound,
    FileNotReady,
    InvalidArgument,
    store_errors,
)
from comfyserve.storage.files import repository
from comfyserve.storage.files.models import (
    DownloadLink,
    FilePage,
    FileState,
    StoredFile,
    TenantUsage,
)
from comfyserve.storage.files.naming import attachment_disposition
from comfyserve.storage.files.settling import OutputSettler
from comfyserve.storage.objects import ObjectStore, ObjectStoreError
from comfyserve.storage.settings import MAX_DOWNLOAD_URL_TTL_SECONDS, Settings

log = structlog.get_logger(__name__)

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 200


def parse_file_id(raw: str) -> uuid.UUID:
    # A malformed id names no file, exactly like an unknown one.
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise FileNotFound(raw) from None


async def find_file(
    sessions: async_sessionmaker[AsyncSession], tenant_id: str, file_id: str
) -> StoredFile:
    """The tenant's file of that id, in any state but `deleting`."""
    parsed = parse_file_id(file_id)
    async with autocommit_session(sessions) as session:
        row = await repository.get(session, tenant_id, parsed)
    if row is None:
        raise FileNotFound(file_id)
    return row


class ReadService:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        store: ObjectStore,
        settings: Settings,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._sessions = sessions
        self._store = store
        self._settings = settings
        self._clock = clock
        self._settler = OutputSettler(sessions, store, settings.max_upload_bytes)

    async def get_file(self, tenant_id: str, file_id: str) -> StoredFile:
        row = await find_file(self._sessions, tenant_id, file_id)
        [row] = await self._settled([row])
        return row

    async def download_url(
        self, tenant_id: str, file_id: str, expires_in: int | None = None
    ) -> DownloadLink:
        [link] = await self.download_urls(tenant_id, [file_id], expires_in)
        return link

    async def download_urls(
        self, tenant_id: str, file_ids: Sequence[str], expires_in: int | None = None
    ) -> list[DownloadLink]:
        if len(file_ids) > DOWNLOAD_URLS_PER_CALL:
            raise InvalidArgument(
                "file_ids", f"at most {DOWNLOAD_URLS_PER_CALL} files per call"
            )
        ttl = self._download_ttl(expires_in)
        parsed = [parse_file_id(file_id) for file_id in file_ids]
        async with autocommit_session(self._sessions) as session:
            found = await repository.get_many(session, tenant_id, parsed)
        # A reader may ask right after the job's end, before storage consumed it.
        async with store_errors():
            settled = await self._settler.settle(list(found.values()))
        rows = {row.id: row for row in settled}
        links = []
        for raw_id, file_id in zip(file_ids, parsed, strict=True):
            row = rows.get(file_id)
            if row is None:
                raise FileNotFound(raw_id)
            if row.state != FileState.READY:
                raise FileNotReady(f"file {raw_id!r} has not been uploaded yet")
            async with store_errors():
                url = await self._store.presign_get(
                    row.key,
                    ttl,
                    content_type=row.content_type,
                    disposition=attachment_disposition(row.filename),
                )
            links.append(
                DownloadLink(file_id=row.id, url=url, expires_at=self._clock() + ttl)
            )
        return links

    async def list_files(
        self,
        tenant_id: str,
        *,
        job_id: str | None = None,
        page_size: int = 0,
        cursor: str = "",
    ) -> FilePage:
        if page_size < 0:
            raise InvalidArgument("page_size", "must not be negative")
        size = min(page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
        after = _decode_cursor(cursor) if cursor else None
        async with autocommit_session(self._sessions) as session:
            rows = await repository.page(
                session, tenant_id, job_id=job_id, after=after, limit=size + 1
            )
        rows = await self._settled(rows)
        if len(rows) <= size:
            return FilePage(files=rows, next_cursor="")
        last = rows[size - 1]
        return FilePage(
            files=rows[:size], next_cursor=_encode_cursor(last.created_at, last.id)
        )

    async def usage(self, tenant_ids: Sequence[str]) -> list[TenantUsage]:
        async with autocommit_session(self._sessions) as session:
            found = await repository.usage(session, tenant_ids)
        # Every tenant asked about is answered, with or without files.
        for tenant_id in tenant_ids:
            found.setdefault(tenant_id, TenantUsage(tenant_id))
        return sorted(found.values(), key=lambda entry: entry.tenant_id)

    async def _settled(self, rows: list[StoredFile]) -> list[StoredFile]:
        # A record is still worth answering while the store is unreachable: its
        # pending outputs read as pending, and the next read settles them.
        try:
            return await self._settler.settle(rows)
        except ObjectStoreError as error:
            log.warning("storage.outputs.settle_failed", error=str(error))
            return rows

    def _download_ttl(self, expires_in: int | None) -> timedelta:
        if expires_in is None:
            return timedelta(seconds=self._settings.download_url_ttl_seconds)
        if expires_in <= 0:
            raise InvalidArgument("expires_in_seconds", "must be positive")
        return timedelta(seconds=min(expires_in, MAX_DOWNLOAD_URL_TTL_SECONDS))


def _encode_cursor(created_at: datetime, file_id: uuid.UUID) -> str:
    payload = json.dumps([created_at.isoformat(), str(file_id)]).encode()
    return base64.urlsafe_b64encode(payload).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        created_at, file_id = json.loads(base64.urlsafe_b64decode(padded))
        parsed = datetime.fromisoformat(created_at)
        if parsed.tzinfo is None:
            raise ValueError("naive timestamp")
        return parsed, uuid.UUID(file_id)
    except (binascii.Error, ValueError, TypeError) as error:
        raise InvalidArgument("cursor", "is not a cursor of this listing") from error
