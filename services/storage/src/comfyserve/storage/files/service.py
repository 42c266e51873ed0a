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
from typing import NoReturn, TypeVar

import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from comfyserve.contracts.limits import DOWNLOAD_URLS_PER_CALL
from comfyserve.storage.errors import (
    AttemptSuperseded,
    ContentMismatch,
    FileNotFound,
    FileNotReady,
    InvalidArgument,
    ObjectStoreUnavailable,
    OutputSlotTaken,
    RegisteredAgain,
    TooLarge,
    UploadMissing,
)
from comfyserve.storage.fences import repository as fences
from comfyserve.storage.files import repository
from comfyserve.storage.files.models import (
    DownloadLink,
    FilePage,
    FilePurpose,
    FileState,
    PurgeReport,
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
# An upload not completed within a day is abandoned.
PENDING_UPLOAD_MAX_AGE = timedelta(days=1)
# A row left `deleting` this long lost its deleter (crash, store outage).
DELETION_RETRY_AFTER = timedelta(minutes=5)
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
                stored = await self._register_output(session, row)
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

    async def _register_output(
        self, session: AsyncSession, row: StoredFile
    ) -> StoredFile:
        job_id = _required("job_id", row.job_id)
        # Shared with other registrations, exclusive with the job's fence: once
        # the fence commits, no registration of the job gets past this check.
        await fences.lock_job(session, job_id, exclusive=False)
        if await fences.get(session, job_id) is not None:
            raise AttemptSuperseded(job_id)
        upserted = await repository.upsert_output(session, row)
        if upserted is None:
            raise OutputSlotTaken(
                "this job, attempt, node and index belong to another owner "
                "or are being deleted"
            )
        return upserted

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
        row = await self.get_file(tenant_id, file_id)
        # The object is checked outside any transaction: a stat and, for client
        # uploads, a read of up to the size limit must hold no connection or
        # lock. The update then applies only to the registration that was read.
        found = await self._checked_upload(row)
        async with self._sessions.begin() as session:
            done = await repository.mark_ready(
                session, row, size=found.size, width=width, height=height
            )
        if done is None:
            await self._raise_changed(tenant_id, file_id)
        log.info("storage.upload.completed", file_id=file_id, size=found.size)
        return done

    async def _checked_upload(self, row: StoredFile) -> ObjectStat:
        """The uploaded object, refused (and deleted) when it breaks the limits."""
        async with _store_errors():
            found = await self._store.stat(row.key)
            if found is None:
                raise UploadMissing(f"nothing was uploaded for file {str(row.id)!r}")
            if found.size > self._settings.max_upload_bytes:
                await self._store.delete(row.key)
                raise TooLarge(
                    f"the upload has {found.size} bytes; the limit is "
                    f"{self._settings.max_upload_bytes}"
                )
            if row.sha256 and not await self._content_matches(row, found):
                await self._store.delete(row.key)
                raise ContentMismatch("the uploaded bytes do not match sha256")
        return found

    async def _raise_changed(self, tenant_id: str, file_id: str) -> NoReturn:
        # Raises FileNotFound when the file was deleted meanwhile.
        await self.get_file(tenant_id, file_id)
        raise RegisteredAgain(
            f"file {file_id!r} was registered again while its upload was checked; "
            "complete the new upload"
        )

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
        if len(file_ids) > DOWNLOAD_URLS_PER_CALL:
            raise InvalidArgument(
                "file_ids", f"at most {DOWNLOAD_URLS_PER_CALL} files per call"
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
        # The claim commits before the store is called: the file is gone for every
        # read, and a re-registration of the same output slot is refused, while
        # the object goes without a lock held.
        async with self._sessions.begin() as session:
            row = await repository.claim(session, tenant_id, parsed, now=self._clock())
        if row is None:
            raise FileNotFound(file_id)
        await self.purge([row])
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

    async def run_retention_once(self, now: datetime) -> PurgeReport:
        """Deletes expired files, abandoned uploads and stalled deletions.

        Each batch is claimed (marked `deleting`) in a short transaction; objects
        are then deleted outside it, and the rows whose object is gone after them.
        A row whose object could not be deleted is retried after
        `DELETION_RETRY_AFTER`.
        """
        deleted = failed = 0
        while True:
            rows = await self._claim_retention_batch(now)
            report = await self.purge(rows)
            deleted += report.deleted
            failed += report.failed
            if len(rows) < RETENTION_BATCH or report.failed:
                break
        if deleted or failed:
            log.info("storage.retention.swept", deleted=deleted, failed=failed)
        return PurgeReport(deleted=deleted, failed=failed)

    async def _claim_retention_batch(self, now: datetime) -> list[StoredFile]:
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

    async def purge(self, rows: Sequence[StoredFile]) -> PurgeReport:
        """Deletes the objects of rows claimed `deleting`, then those rows.

        Never raises for the store: a row whose object stays is left `deleting`,
        and retention retries it.
        """
        gone: list[uuid.UUID] = []
        for row in rows:
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
        attempt: int | None = None
        if request.purpose == FilePurpose.INPUT:
            for field in ("job_id", "node_id", "index", "attempt"):
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
            # Callers from before attempts were fenced write attempt 1.
            attempt = 1 if request.attempt is None else request.attempt
            if attempt < 1:
                raise InvalidArgument("attempt", "must be at least 1")
            key = output_key(tenant_id, job_id, attempt, node_id, index, filename)
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
            attempt=attempt,
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
