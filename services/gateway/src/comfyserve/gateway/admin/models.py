"""Request and response bodies of the `/admin` routes."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from comfyserve.gateway.bodies import RequestBody

MAX_PAGE_SIZE = 200
# The workflow service's bound on a tenant's own limit.
MAX_QUOTA = 1_000_000


class Usage(BaseModel):
    jobs_by_status: dict[str, int] = Field(
        description="`pending`, `running`, `completed`, `failed`, `cancelled`..."
    )
    gpu_seconds: float = Field(description="Run time of the tenant's ended jobs.")
    stored_bytes: int
    stored_files: int


class Tenant(BaseModel):
    id: str
    name: str
    suspended: bool
    created_at: datetime | None
    users: int
    active_keys: int


class TenantWithUsage(Tenant):
    usage: Usage


class TenantPage(BaseModel):
    items: list[TenantWithUsage]
    next_cursor: str | None


class QuotaRequest(RequestBody):
    max_running: int | None = Field(
        default=None, ge=1, le=MAX_QUOTA, description="Omitted: the default."
    )
    max_queued: int | None = Field(
        default=None, ge=1, le=MAX_QUOTA, description="Omitted: the default."
    )


class Quota(BaseModel):
    tenant_id: str
    max_running: int = Field(description="Jobs of the tenant that may run at once.")
    max_queued: int = Field(description="Jobs it may have waiting; more is 429.")
    running_is_default: bool
    queued_is_default: bool
