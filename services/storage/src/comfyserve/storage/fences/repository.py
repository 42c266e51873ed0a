"""Every query on the `job_fences` table, and the per-job lock that orders a job's
end before any later output registration. Functions never commit."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from comfyserve.storage.fences.models import JobFence

# First key of the two-key advisory locks on jobs, so they never meet the
# single-key locks of other code (migrations) in the same database.
_JOB_LOCK_CLASS = "comfyserve.storage.job"


async def lock_job(session: AsyncSession, job_id: str, *, exclusive: bool) -> None:
    """Until the transaction ends: registrations of the job's outputs share the
    lock, recording its end takes it alone. A registration that committed before
    the fence is seen by the fence's clean-up; one after it sees the fence."""
    function = "pg_advisory_xact_lock" if exclusive else "pg_advisory_xact_lock_shared"
    await session.execute(
        text(f"SELECT {function}(hashtext(:lock_class), hashtext(:job_id))"),
        {"lock_class": _JOB_LOCK_CLASS, "job_id": job_id},
    )


async def get(session: AsyncSession, job_id: str) -> JobFence | None:
    return await session.get(JobFence, job_id)


async def record(session: AsyncSession, fence: JobFence) -> JobFence:
    """Inserts the fence unless the job has one; returns the job's fence, so a
    redelivered event keeps the first one."""
    await session.execute(
        pg_insert(JobFence)
        .values(fence.model_dump())
        .on_conflict_do_nothing(index_elements=["job_id"])
    )
    result = await session.execute(
        select(JobFence)
        .where(col(JobFence.job_id) == fence.job_id)
        .execution_options(populate_existing=True)
    )
    return result.scalar_one()


async def unswept(
    session: AsyncSession, *, ended_before: datetime, limit: int
) -> list[JobFence]:
    """Fences not swept yet that ended before `ended_before`, oldest first (index
    `job_fences_unswept`)."""
    result = await session.execute(
        select(JobFence)
        .where(
            col(JobFence.swept_at).is_(None),
            col(JobFence.ended_at) < ended_before,
        )
        .order_by(col(JobFence.ended_at))
        .limit(limit)
    )
    return list(result.scalars())


async def mark_swept(session: AsyncSession, job_id: str, *, now: datetime) -> None:
    await session.execute(
        update(JobFence).where(col(JobFence.job_id) == job_id).values(swept_at=now)
    )
