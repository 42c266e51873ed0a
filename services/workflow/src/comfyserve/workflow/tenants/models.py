"""Tenant quotas as stored, and what a tenant's quota and usage read as."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import Column, DateTime, Integer, Table, Text

from comfyserve.workflow.db import metadata

tenant_quotas = Table(
    "tenant_quotas",
    metadata,
    Column("tenant_id", Text, primary_key=True),
    # NULL: the deployment's default applies.
    Column("max_running", Integer),
    Column("max_queued", Integer),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)


@dataclass(frozen=True, slots=True)
class QuotaLimits:
    """A tenant's own limits; None where the default applies."""

    max_running: int | None = None
    max_queued: int | None = None


@dataclass(frozen=True, slots=True)
class TenantQuota:
    """A tenant's limits in force, and whether each is the default."""

    tenant_id: str
    max_running: int
    max_queued: int
    running_is_default: bool
    queued_is_default: bool


@dataclass(slots=True)
class TenantUsage:
    tenant_id: str
    jobs_by_status: dict[str, int] = field(default_factory=dict)
    gpu_seconds: float = 0.0
