"""File records and their objects: uploads, downloads, listing and retention."""

from __future__ import annotations

import base64
import binascii
import json
import re
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import TypeVar

import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from comfyserve.storage.errors import (
    ContentMismatch,
    FileNotFound,
    FileNotReady,
    InvalidArgument,
    ObjectStoreUnavailable,
    OutputSlotTaken,
    TooLarge,
    UploadMissing,
)
from comfyserve.storage.files import repository
from comfyserve.storage.files.models import (
    DownloadLink,
    FilePage,
    FilePurpose,
    FileState,
    RetentionReport,
    StoredFile,
    Upload,
    UploadRequest,
)
from comfyserve.storage.files.naming import (
    attachment_disposition,
    input_key,
    key_segment,
    normalise_content_type,
    output_key,
    safe_filename,
)
from comfyserve.storage.objects import ObjectStat, ObjectStore, ObjectStoreError
from comfyserve.storage.settings import MAX_DOWNLOAD_URL_TTL_SECONDS, Settings

log = structlog.get_logger(__name__)

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 200
MAX_URLS_PER_CALL = 200
# An upload not completed within a day is abandoned.
PENDING_UPLOAD_MAX_AGE = timedelta(days=1)
RETENTION_BATCH = 100

_SHA256 = re.compile(r"^[0-9a-f]{64}$")

T = TypeVar("T")


def utcnow() -> datetime:
    return datetime.now(UTC)


class FileService:
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

    async def create_upload(self, request: UploadRequest) -> Upload:
        row = self._new_row(request)
        async with self._sessions.begin() as session:
            if row.purpose == FilePurpose.INPUT:
                await repository.add(session, row)
                stored = row
            else:
                upserted = await repository.upsert_output(session, row)
                if upserted is None:
                    raise OutputSlotTaken(
                        "this job, node and index belong to another owner"
                    )
                stored = upserted
        ttl = timedelta(seconds=self._settings.upload_url_ttl_seconds)
        async with _store_errors():
            url = await self._store.presign_put(stored.key, ttl)
        log.info(
            "storage.upload.created",
            file_id=str(stored.id),
            tenant_id=stored.tenant_id,
            purpose=stored.purpose,
        )
        return Upload(
            file=stored,
            url=url,
            url_expires_at=self._clock() + ttl,
            headers={"Content-Type": stored.content_type},
        )

    async def complete_upload(
        self,
        tenant_id: str,
        file_id: str,
        *,
        width: int | None = None,
        height: int | None = None,
    ) -> StoredFile:
        for field, value in (("width", width), ("height", height)):
            if value is not None and value <= 0:
                raise InvalidArgument(field, "must be positive")
        parsed = _file_id(file_id)
        # One transaction reads the row, checks the object and marks it ready:
        # a second checkout and read of the same row cost every output a round
        # trip. Only the final update writes, so a refusal leaves nothing behind.
        async with self._sessions.begin() as session:
            row = await repository.get(session, tenant_id, parsed)
            if row is None:
                raise FileNotFound(file_id)
            async with _store_errors():
                found = await self._store.stat(row.key)
                if found is None:
                    raise UploadMissing(f"nothing was uploaded for file {file_id!r}")
                if found.size > self._settings.max_upload_bytes:
                    await self._store.delete(row.key)
                    raise TooLarge(
                        f"the upload has {found.size} bytes; the limit is "
                        f"{self._settings.max_upload_bytes}"
                    )
                if row.sha256 and not await self._content_matches(row, found):
                    await self._store.delete(row.key)
                    raise ContentMismatch("the uploaded bytes do not match sha256")
            await repository.mark_ready(
                session, row, size=found.size, width=width, height=height
            )
        log.info("storage.upload.completed", file_id=file_id, size=found.size)
        return row

    async def _content_matches(self, known: StoredFile, found: ObjectStat) -> bool:
        # Client uploads are re-read and hashed. Outputs come only from the
        # executor, which hashed the very bytes it uploaded; re-reading each one
        # cost a full object read on every job's path, so their declared size
        # is checked instead, which still catches a short or overlong upload.
        if known.purpose == FilePurpose.OUTPUT.value:
            return found.size == known.size
        return await self._store.sha256(known.key) == known.sha256

    async def get_file(self, tenant_id: str, file_id: str) -> StoredFile:
        parsed = _file_id(file_id)
        async with self._sessions() as session:
            row = await repository.get(session, tenant_id, parsed)
        if row is None:
            raise FileNotFound(file_id)
        return row

    async def download_url(
        self, tenant_id: str, file_id: str, expires_in: int | None = None
    ) -> DownloadLink:
        [link] = await self.download_urls(tenant_id, [file_id], expires_in)
        return link

    async def download_urls(
        self, tenant_id: str, file_ids: Sequence[str], expires_in: int | None = None
    ) -> list[DownloadLink]:
        if len(file_ids) > MAX_URLS_PER_CALL:
            raise InvalidArgument(
                "file_ids", f"at most {MAX_URLS_PER_CALL} files per call"
            )
        ttl = self._download_ttl(expires_in)
        parsed = [_file_id(file_id) for file_id in file_ids]
        async with self._sessions() as session:
            rows = await repository.get_many(session, tenant_id, parsed)
        links = []
        for raw_id, file_id in zip(file_ids, parsed, strict=True):
            row = rows.get(file_id)
            if row is None:
                raise FileNotFound(raw_id)
            if row.state != FileState.READY:
                raise FileNotReady(f"file {raw_id!r} has not been uploaded yet")
            async with _store_errors():
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

    async def delete_file(self, tenant_id: str, file_id: str) -> None:
        parsed = _file_id(file_id)
        async with self._sessions.begin() as session:
            # The row stays locked while its object goes, so a concurrent re-upload
            # of the same output waits instead of leaving an orphaned object.
            row = await repository.get(session, tenant_id, parsed, for_update=True)
            if row is None:
                raise FileNotFound(file_id)
            async with _store_errors():
                await self._store.delete(row.key)
            await repository.remove(session, row)
        log.info("storage.file.deleted", file_id=file_id, tenant_id=tenant_id)

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
        async with self._sessions() as session:
            rows = await repository.page(
                session, tenant_id, job_id=job_id, after=after, limit=size + 1
            )
        if len(rows) <= size:
            return FilePage(files=rows, next_cursor="")
        last = rows[size - 1]
        return FilePage(
            files=rows[:size], next_cursor=_encode_cursor(last.created_at, last.id)
        )

    async def run_retention_once(self, now: datetime) -> RetentionReport:
        """Deletes expired files and abandoned uploads: the object, then the row.

        A row whose object could not be deleted stays for the next round.
        """
        deleted = failed = 0
        while True:
            async with self._sessions.begin() as session:
                rows = await repository.lock_expired(
                    session,
                    now=now,
                    pending_before=now - PENDING_UPLOAD_MAX_AGE,
                    limit=RETENTION_BATCH,
                )
                gone: list[uuid.UUID] = []
                for row in rows:
                    try:
                        await self._store.delete(row.key)
                    except ObjectStoreError as error:
                        failed += 1
                        log.warning(
                            "storage.retention.delete_failed",
                            file_id=str(row.id),
                            error=str(error),
                        )
                        continue
                    gone.append(row.id)
                if gone:
                    await repository.delete_ids(session, gone)
            deleted += len(gone)
            if len(rows) < RETENTION_BATCH or len(gone) < len(rows):
                break
        if deleted or failed:
            log.info("storage.retention.swept", deleted=deleted, failed=failed)
        return RetentionReport(deleted=deleted, failed=failed)

    def _new_row(self, request: UploadRequest) -> StoredFile:
        tenant_id = key_segment("tenant_id", request.tenant_id)
        filename = safe_filename(request.filename)
        content_type = normalise_content_type(
            request.content_type, self._settings.allowed_content_types
        )
        if request.size < 0:
            raise InvalidArgument("size", "must not be negative")
        if request.size > self._settings.max_upload_bytes:
            raise TooLarge(
                f"size: {request.size} bytes exceeds the limit of "
                f"{self._settings.max_upload_bytes} bytes"
            )
        sha256 = request.sha256.lower() if request.sha256 else None
        if sha256 is not None and not _SHA256.fullmatch(sha256):
            raise InvalidArgument("sha256", "must be 64 hex digits")
        if request.ttl_seconds is not None and request.ttl_seconds <= 0:
            raise InvalidArgument("ttl_seconds", "must be positive")
        file_id = uuid.uuid4()
        if request.purpose == FilePurpose.INPUT:
            for field in ("job_id", "node_id", "index"):
                if getattr(request, field) is not None:
                    raise InvalidArgument(field, "is only accepted for outputs")
            key = input_key(tenant_id, file_id, filename)
            default_ttl = self._settings.input_ttl_seconds
        elif request.purpose == FilePurpose.OUTPUT:
            job_id = key_segment("job_id", _required("job_id", request.job_id))
            node_id = key_segment("node_id", _required("node_id", request.node_id))
            index = _required("index", request.index)
            if index < 0:
                raise InvalidArgument("index", "must not be negative")
            key = output_key(tenant_id, job_id, node_id, index, filename)
            default_ttl = self._settings.output_ttl_seconds
        else:
            raise InvalidArgument("purpose", "must be input or output")
        now = self._clock()
        return StoredFile(
            id=file_id,
            tenant_id=tenant_id,
            purpose=request.purpose.value,
            filename=filename,
            content_type=content_type,
            size=request.size,
            sha256=sha256,
            bucket=self._store.bucket,
            key=key,
            job_id=request.job_id,
            node_id=request.node_id,
            index=request.index,
            state=FileState.PENDING.value,
            created_at=now,
            expires_at=now + timedelta(seconds=request.ttl_seconds or default_ttl),
        )

    def _download_ttl(self, expires_in: int | None) -> timedelta:
        if expires_in is None:
            return timedelta(seconds=self._settings.download_url_ttl_seconds)
        if expires_in <= 0:
            raise InvalidArgument("expires_in_seconds", "must be positive")
        return timedelta(seconds=min(expires_in, MAX_DOWNLOAD_URL_TTL_SECONDS))


def _required(field: str, value: T | None) -> T:
    if value is None:
        raise InvalidArgument(field, "is required for outputs")
    return value


def _file_id(raw: str) -> uuid.UUID:
    # A malformed id names no file, exactly like an unknown one.
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise FileNotFound(raw) from None


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


@asynccontextmanager
async def _store_errors() -> AsyncIterator[None]:
    try:
        yield
    except ObjectStoreError as error:
        log.warning("storage.object_store.failed", error=str(error))
        raise ObjectStoreUnavailable("the object store is unavailable") from error
