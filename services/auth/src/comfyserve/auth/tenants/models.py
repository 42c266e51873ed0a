"""The `tenants` table and what the service hands its transport.

The DDL (indexes included) lives in the Alembic migrations; these tables are
what the repositories query.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from sqlalchemy import Boolean, Column, DateTime, Table, Text, Uuid

from comfyserve.auth.db import metadata

tenants = Table(
    "tenants",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("name", Text, nullable=False),
    Column("suspended", Boolean, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

MAX_NAME_CHARS = 100


@dataclass(frozen=True, slots=True)
class Tenant:
    id: UUID
    name: str
    suspended: bool
    created_at: datetime
    users: int
    active_keys: int


@dataclass(frozen=True, slots=True)
class TenantPage:
    tenants: list[Tenant]
    next_cursor: str | None
