"""The `api_keys` table and the key records the service hands its transport.

The DDL (indexes included) lives in the Alembic migrations.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from uuid import UUID

from sqlalchemy import Column, DateTime, Integer, LargeBinary, Table, Text, Uuid
from sqlalchemy.dialects.postgresql import ARRAY

from comfyserve.auth.db import metadata

MAX_NAME_CHARS = 100
# Per-key rate limits beyond these are mistakes, not plans.
MAX_PER_MINUTE = 1_000_000
MAX_BURST = 100_000
MAX_LIFETIME_SECONDS = 10 * 365 * 24 * 3600
BOOTSTRAP_KEY_NAME = "bootstrap"


class ApiKeyKind(StrEnum):
    # Made by a tenant's user (or at bootstrap); acts for that tenant.
    TENANT = "tenant"
    # Configured in AUTH_SERVICE_KEYS; one of our services, for any tenant.
    SERVICE = "service"


api_keys = Table(
    "api_keys",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("kind", Text, nullable=False),
    Column("tenant_id", Uuid),
    Column("service_name", Text),
    Column("name", Text, nullable=False),
    Column("prefix", Text, nullable=False),
    Column("secret_hash", LargeBinary, nullable=False),
    Column("scopes", ARRAY(Text), nullable=False),
    Column("created_by", Uuid),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True)),
    Column("last_used_at", DateTime(timezone=True)),
    Column("revoked_at", DateTime(timezone=True)),
    Column("rate_per_minute", Integer, nullable=False),
    Column("rate_burst", Integer, nullable=False),
)


@dataclass(frozen=True, slots=True)
class ApiKey:
    """A key as listed: everything but its secret."""

    id: UUID
    kind: ApiKeyKind
    tenant_id: UUID | None
    service_name: str | None
    name: str
    prefix: str
    scopes: frozenset[str]
    created_by: UUID | None
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None
    rate_per_minute: int
    rate_burst: int

    def active(self, now: datetime) -> bool:
        return self.revoked_at is None and (
            self.expires_at is None or self.expires_at > now
        )


@dataclass(frozen=True, slots=True)
class NewApiKey:
    """CreateApiKey as the caller sent it; the service validates it."""

    name: str
    scopes: list[str]
    expires_in_seconds: int | None
    per_minute: int
    burst: int


@dataclass(frozen=True, slots=True)
class CreatedApiKey:
    key: ApiKey
    # Shown this once; only its digest is stored.
    secret: str
