"""Uploads: registering a file and signing its PUT, then checking what arrived."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import NoReturn, TypeVar

import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from comfyserve.runtime.database import autocommit_session
from comfyserve.storage.clock import utcnow
from comfyserve.storage.errors import (
    AttemptSuperseded,
    ContentMismatch,
    InvalidArgument,
    OutputSlotTaken,
    RegisteredAgain,
    TooLarge,
    UploadMissing,
    store_errors,
)
from comfyserve.storage.fences import repository as fences
from comfyserve.storage.files import repository
from comfyserve.storage.files.models import (
    FilePurpose,
    FileState,
    StoredFile,
    Upload,
    UploadRequest,
)
from comfyserve.storage.files.naming import (
    input_key,
    key_segment,
    normalise_blake3,
    normalise_content_type,
    normalise_folder,
    output_key,
    safe_filename,
    safe_path,
)
from comfyserve.storage.files.reads import find_file
from comfyserve.storage.objects import ObjectStat, ObjectStore
from comfyserve.storage.settings import Settings

log = structlog.get_logger(__name__)

_SHA256 = re.compile(r"^[0-9a-f]{64}$")

T = TypeVar("T")


class UploadService:
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
        async with store_errors():
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
        _check_sizes(width, height)
        row = await find_file(self._sessions, tenant_id, file_id)
        # The object is checked outside any transaction: a stat and, for client
        # uploads, a read of up to the size limit must hold no connection or
        # lock. The update then applies only to the registration that was read.
        found = await self._checked_upload(row)
        async with autocommit_session(self._sessions) as session:
            done = await repository.mark_ready(
                session, row, size=found.size, width=width, height=height
            )
        if done is None:
            await self._raise_changed(tenant_id, file_id)
        log.info("storage.upload.completed", file_id=file_id, size=found.size)
        return done

    async def _checked_upload(self, row: StoredFile) -> ObjectStat:
        """The uploaded object, refused (and deleted) when it breaks the limits."""
        async with store_errors():
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
        await find_file(self._sessions, tenant_id, file_id)
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
        blake3 = normalise_blake3(request.blake3) if request.blake3 else None
        _check_sizes(request.width, request.height)
        file_id = uuid.uuid4()
        attempt: int | None = None
        folder: str | None = None
        path: str | None = None
        if request.purpose == FilePurpose.INPUT:
            for field in ("job_id", "node_id", "index", "attempt", "width", "height"):
                if getattr(request, field) is not None:
                    raise InvalidArgument(field, "is only accepted for outputs")
            folder = normalise_folder(request.folder)
            path = safe_path(request.path) if request.path else filename
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
        if request.purpose == FilePurpose.OUTPUT and (request.folder or request.path):
            raise InvalidArgument("folder", "is only accepted for inputs")
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
            width=request.width,
            height=request.height,
            blake3=blake3,
            folder=folder,
            path=path,
            state=FileState.PENDING.value,
            created_at=now,
            expires_at=now + timedelta(seconds=request.ttl_seconds or default_ttl),
        )


def _check_sizes(width: int | None, height: int | None) -> None:
    for field, value in (("width", width), ("height", height)):
        if value is not None and value <= 0:
            raise InvalidArgument(field, "must be positive")


def _required(field: str, value: T | None) -> T:
    if value is None:
        raise InvalidArgument(field, "is required for outputs")
    return value
