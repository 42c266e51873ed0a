"""Queries of the `files` table by content hash and by native name; like every
repository function they never commit.

The ready-state predicate is a literal, so Postgres matches the partial
indexes `files_tenant_blake3` and `files_tenant_path` (see `repository`).
"""

from __future__ import annotations

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from comfyserve.storage.files.models import FileState, StoredFile

_IS_READY = text(f"state = '{FileState.READY.value}'")


async def newest_by_hash(
    session: AsyncSession, tenant_id: str, blake3: str, *, lock: bool = False
) -> StoredFile | None:
    """The tenant's newest ready file with this hash (index `files_tenant_blake3`).

    `lock` holds it (FOR SHARE) until the transaction ends, so a deletion
    claiming it waits, and a row minted over its object is seen by that
    deletion's check of who else holds the key.
    """
    statement = (
        select(StoredFile)
        .where(
            col(StoredFile.tenant_id) == tenant_id,
            col(StoredFile.blake3) == blake3,
            _IS_READY,
        )
        .order_by(col(StoredFile.created_at).desc())
        .limit(1)
    )
    if lock:
        statement = statement.with_for_update(read=True)
    result = await session.execute(statement)
    return result.scalar_one_or_none()


async def newest_named(
    session: AsyncSession,
    tenant_id: str,
    folder: str,
    path: str,
    *,
    blake3: str | None = None,
) -> StoredFile | None:
    """The tenant's newest ready file at `folder`/`path` (index
    `files_tenant_path`), of this hash when one is given."""
    statement = select(StoredFile).where(
        col(StoredFile.tenant_id) == tenant_id,
        col(StoredFile.folder) == folder,
        col(StoredFile.path) == path,
        _IS_READY,
    )
    if blake3 is not None:
        statement = statement.where(col(StoredFile.blake3) == blake3)
    result = await session.execute(
        statement.order_by(col(StoredFile.created_at).desc()).limit(1)
    )
    return result.scalar_one_or_none()
