"""Every query on the `files` table. Functions never commit: callers own the unit."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import and_, delete, or_, select, text, tuple_
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from comfyserve.storage.files.models import FilePurpose, FileState, StoredFile


async def get(
    session: AsyncSession,
    tenant_id: str,
    file_id: uuid.UUID,
    *,
    for_update: bool = False,
) -> StoredFile | None:
    statement = select(StoredFile).where(
        col(StoredFile.id) == file_id, col(StoredFile.tenant_id) == tenant_id
    )
    if for_update:
        statement = statement.with_for_update()
    result = await session.execute(statement)
    return result.scalar_one_or_none()


async def get_many(
    session: AsyncSession, tenant_id: str, file_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, StoredFile]:
    result = await session.execute(
        select(StoredFile).where(
            col(StoredFile.id).in_(file_ids),
            col(StoredFile.tenant_id) == tenant_id,
        )
    )
    return {row.id: row for row in result.scalars()}


async def add(session: AsyncSession, row: StoredFile) -> None:
    session.add(row)
    await session.flush()


async def upsert_output(session: AsyncSession, row: StoredFile) -> StoredFile | None:
    """Inserts an output, or resets the tenant's row for the same (job, node, index).

    Returns None when another tenant holds that slot. The existing row keeps its
    id and key, so a re-run overwrites the same object.
    """
    values = row.model_dump()
    statement = (
        pg_insert(StoredFile)
        .values(values)
        .on_conflict_do_update(
            index_elements=["job_id", "node_id", "index"],
            # A literal, as the index has it: with a bound parameter Postgres cannot
            # match the partial index once it switches to a generic plan.
            index_where=text(f"purpose = '{FilePurpose.OUTPUT.value}'"),
            set_={
                name: values[name]
                for name in (
                    "filename",
                    "content_type",
                    "size",
                    "sha256",
                    "state",
                    "width",
                    "height",
                    "created_at",
                    "expires_at",
                )
            },
            where=col(StoredFile.tenant_id) == row.tenant_id,
        )
        .returning(StoredFile)
        .execution_options(populate_existing=True)
    )
    result = await session.execute(statement)
    return result.scalar_one_or_none()


async def mark_ready(
    session: AsyncSession,
    row: StoredFile,
    *,
    size: int,
    width: int | None,
    height: int | None,
) -> None:
    row.size = size
    row.state = FileState.READY.value
    if width is not None:
        row.width = width
    if height is not None:
        row.height = height
    await session.flush()


async def remove(session: AsyncSession, row: StoredFile) -> None:
    await session.delete(row)
    await session.flush()


async def page(
    session: AsyncSession,
    tenant_id: str,
    *,
    job_id: str | None,
    after: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> list[StoredFile]:
    """Newest first; `after` is the (created_at, id) of the previous page's last row."""
    statement = select(StoredFile).where(col(StoredFile.tenant_id) == tenant_id)
    if job_id is not None:
        statement = statement.where(col(StoredFile.job_id) == job_id)
    if after is not None:
        statement = statement.where(
            tuple_(col(StoredFile.created_at), col(StoredFile.id)) < tuple_(*after)
        )
    statement = statement.order_by(
        col(StoredFile.created_at).desc(),
        col(StoredFile.id).desc(),
    ).limit(limit)
    result = await session.execute(statement)
    return list(result.scalars())


async def lock_expired(
    session: AsyncSession, *, now: datetime, pending_before: datetime, limit: int
) -> list[StoredFile]:
    """Expired files and stale pending uploads, locked; rows other instances hold are
    skipped."""
    statement = (
        select(StoredFile)
        .where(
            or_(
                col(StoredFile.expires_at) <= now,
                and_(
                    col(StoredFile.state) == FileState.PENDING.value,
                    col(StoredFile.created_at) < pending_before,
                ),
            )
        )
        .order_by(col(StoredFile.expires_at))
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    result = await session.execute(statement)
    return list(result.scalars())


async def delete_ids(session: AsyncSession, file_ids: Sequence[uuid.UUID]) -> None:
    await session.execute(delete(StoredFile).where(col(StoredFile.id).in_(file_ids)))
