"""The `job_fences` table: which attempt owns the outputs of each ended job."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import DateTime, Integer, String
from sqlmodel import Field

from comfyserve.storage.files.models import StorageModel


class JobFence(StorageModel, table=True):
    __tablename__ = "job_fences"

    job_id: str = Field(primary_key=True, sa_type=String(128))
    tenant_id: str = Field(sa_type=String(128))
    # The attempt that ended the job; 0 when it never started (it owns nothing).
    attempt: int = Field(sa_type=Integer)
    ended_at: datetime = Field(sa_type=DateTime(timezone=True))
    # Set once objects uploaded late under the job's prefix were removed.
    swept_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))


@dataclass(frozen=True)
class FinishedJob:
    """A job's end as the workflow service announced it."""

    job_id: str
    tenant_id: str
    attempt: int


@dataclass(frozen=True)
class FenceReport:
    """What recording one job's end did: outputs of other attempts removed
    (`deleted`) or left `deleting` for retention (`failed`), and the ending
    attempt's uploaded outputs made ready (`settled`)."""

    attempt: int
    deleted: int
    failed: int
    settled: int = 0


@dataclass(frozen=True)
class SweepReport:
    """Fences swept, objects without a row removed, fences left for next round."""

    swept: int
    orphans_deleted: int
    failed: int
