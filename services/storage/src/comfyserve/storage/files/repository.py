"""Every query on the `files` table. Functions never commit: callers own the unit.

Rows in state `deleting` are gone for every read; only the deletion path sees them.
Predicates that partial indexes are built on are written as literals: with a bound
parameter Postgres cannot match the partial index once it switches to a generic
plan for the prepared statement.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import (
    ColumnElement,
    Select,
    TextClause,
    and_,
    delete,
    func,
    select,
    text,
    tuple_,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.dml import ReturningUpdate
from sqlmodel import col

from comfyserve.storage.files.models import (
    FilePurpose,
    FileState,
    StoredFile,
    TenantUsage,
)

_IS_OUTPUT = text(f"purpose = '{FilePurpose.OUTPUT.value}'")
_IS_PENDING = text(f"state = '{FileState.PENDING.value}'")
_IS_DELETING = text(f"state = '{FileState.DELETING.value}'")


def _live() -> ColumnElement[bool]:
    return col(StoredFile.state) != FileState.DELETING.value


async def get(
    session: AsyncSession, tenant_id: str, file_id: uuid.UUID
) -> StoredFile | None:
    result = await session.execute(
        select(StoredFile).where(
            col(StoredFile.id) == file_id,
            col(StoredFile.tenant_id) == tenant_id,
            _live(),
        )
    )
    return result.scalar_one_or_none()


async def get_many(
    session: AsyncSession, tenant_id: str, file_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, StoredFile]:
    result = await session.execute(
        select(StoredFile).where(
            col(StoredFile.id).in_(file_ids),
            col(StoredFile.tenant_id) == tenant_id,
            _live(),
        )
    )
    return {row.id: row for row in result.scalars()}


async def keys_still_used(session: AsyncSession, keys: Sequence[str]) -> set[str]:
    """Of `keys`, those a live row still names (a file minted from a hash
    shares its source's object)."""
    if not keys:
        return set()
    result = await session.execute(
        select(col(StoredFile.key)).where(col(StoredFile.key).in_(keys), _live())
    )
    return set(result.scalars())


async def add(session: AsyncSession, row: StoredFile) -> None:
    session.add(row)
    await session.flush()


async def upsert_output(session: AsyncSession, row: StoredFile) -> StoredFile | None:
    """Inserts an output, or resets the tenant's row for the same (job, attempt,
    node, index).

    Returns None when another tenant holds that slot or its row is being deleted.
    The existing row keeps its id and key, so a retry within one attempt
    overwrites its own object.
    """
    values = row.model_dump()
    statement = (
        pg_insert(StoredFile)
        .values(values)
        .on_conflict_do_update(
            index_elements=["job_id", "attempt", "node_id", "index"],
            index_where=_IS_OUTPUT,
            set_={
                name: values[name]
                for name in (
                    "filename",
                    "content_type",
                    "size",
                    "sha256",
                    "blake3",
                    "state",
                    "width",
                    "height",
                    "created_at",
                    "expires_at",
                )
            },
            where=and_(col(StoredFile.tenant_id) == row.tenant_id, _live()),
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
) -> StoredFile | None:
    """Marks the registration `row` was read as ready; None when the row was
    deleted or registered again since (its `created_at` moved)."""
    values: dict[str, object] = {"size": size, "state": FileState.READY.value}
    if width is not None:
        values["width"] = width
    if height is not None:
        values["height"] = height
    statement = (
        update(StoredFile)
        .where(
            col(StoredFile.id) == row.id,
            col(StoredFile.tenant_id) == row.tenant_id,
            col(StoredFile.created_at) == row.created_at,
            _live(),
        )
        .values(values)
        .returning(StoredFile)
        .execution_options(synchronize_session=False, populate_existing=True)
    )
    result = await session.execute(statement)
    return result.scalar_one_or_none()


async def page(
    session: AsyncSession,
    tenant_id: str,
    *,
    job_id: str | None,
    after: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> list[StoredFile]:
    """Newest first; `after` is the (created_at, id) of the previous page's last row."""
    statement = select(StoredFile).where(
        col(StoredFile.tenant_id) == tenant_id, _live()
    )
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


async def usage(
    session: AsyncSession, tenant_ids: Sequence[str]
) -> dict[str, TenantUsage]:
    """Ready files and their bytes per tenant: of `tenant_ids`, or of every
    tenant with a ready file when empty."""
    statement = select(
        col(StoredFile.tenant_id), func.count(), func.sum(col(StoredFile.size))
    ).where(col(StoredFile.state) == FileState.READY.value)
    if tenant_ids:
        statement = statement.where(col(StoredFile.tenant_id).in_(tenant_ids))
    result = await session.execute(statement.group_by(col(StoredFile.tenant_id)))
    return {
        tenant_id: TenantUsage(tenant_id, files=int(files), bytes=int(size))
        for tenant_id, files, size in result
    }


async def claim(
    session: AsyncSession, tenant_id: str, file_id: uuid.UUID, *, now: datetime
) -> StoredFile | None:
    """Marks one live file `deleting`; None when there is no such file."""
    result = await session.execute(
        _mark_deleting(
            now,
            col(StoredFile.id) == file_id,
            col(StoredFile.tenant_id) == tenant_id,
            _live(),
        )
    )
    return result.scalar_one_or_none()


async def claim_expired(
    session: AsyncSession, *, now: datetime, limit: int
) -> list[StoredFile]:
    """Live files past their expiry (index `files_expires_at`)."""
    return await _claim(
        session,
        _candidates(limit, col(StoredFile.expires_at) <= now, _live()).order_by(
            col(StoredFile.expires_at)
        ),
        now,
    )


async def claim_abandoned(
    session: AsyncSession, *, created_before: datetime, now: datetime, limit: int
) -> list[StoredFile]:
    """Uploads still pending since before `created_before` (index
    `files_pending_created_at`)."""
    return await _claim(
        session,
        _candidates(
            limit, _IS_PENDING, col(StoredFile.created_at) < created_before
        ).order_by(col(StoredFile.created_at)),
        now,
    )


async def claim_stalled(
    session: AsyncSession, *, deleting_before: datetime, now: datetime, limit: int
) -> list[StoredFile]:
    """Rows left `deleting` since before `deleting_before`: their deletion crashed or
    the store refused it (index `files_deleting_since`)."""
    return await _claim(
        session,
        _candidates(
            limit, _IS_DELETING, col(StoredFile.deleting_since) < deleting_before
        ).order_by(col(StoredFile.deleting_since)),
        now,
    )


async def claim_superseded(
    session: AsyncSession, *, job_id: str, attempt: int, now: datetime
) -> list[StoredFile]:
    """The job's live outputs of every attempt but `attempt`, marked `deleting`."""
    result = await session.execute(
        _mark_deleting(
            now,
            _IS_OUTPUT,
            col(StoredFile.job_id) == job_id,
            col(StoredFile.attempt) != attempt,
            _live(),
        )
    )
    return list(result.scalars())


async def pending_outputs(
    session: AsyncSession, *, job_id: str, attempt: int
) -> list[StoredFile]:
    """The job's outputs of `attempt` still pending (index `files_output_slot_key`)."""
    result = await session.execute(
        select(StoredFile).where(
            _IS_OUTPUT,
            _IS_PENDING,
            col(StoredFile.job_id) == job_id,
            col(StoredFile.attempt) == attempt,
        )
    )
    return list(result.scalars())


async def output_keys(session: AsyncSession, *, job_id: str, attempt: int) -> set[str]:
    """Object keys of the job's outputs of `attempt`, in any state."""
    result = await session.execute(
        select(col(StoredFile.key)).where(
            _IS_OUTPUT,
            col(StoredFile.job_id) == job_id,
            col(StoredFile.attempt) == attempt,
        )
    )
    return set(result.scalars())


async def delete_claimed(session: AsyncSession, file_ids: Sequence[uuid.UUID]) -> None:
    await session.execute(
        delete(StoredFile).where(col(StoredFile.id).in_(file_ids), _IS_DELETING)
    )


Condition = ColumnElement[bool] | TextClause


def _candidates(limit: int, *conditions: Condition) -> Select[uuid.UUID]:
    # Rows another instance is claiming right now are skipped, not waited for.
    return (
        select(col(StoredFile.id))
        .where(*conditions)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )


async def _claim(
    session: AsyncSession, candidates: Select[uuid.UUID], now: datetime
) -> list[StoredFile]:
    result = await session.execute(
        _mark_deleting(now, col(StoredFile.id).in_(candidates))
    )
    return list(result.scalars())


def _mark_deleting(
    now: datetime, *conditions: Condition
) -> ReturningUpdate[StoredFile]:
    return (
        update(StoredFile)
        .where(*conditions)
        .values(state=FileState.DELETING.value, deleting_since=now)
        .returning(StoredFile)
        .execution_options(synchronize_session=False, populate_existing=True)
    )
