"""The refresh token tables and the token pair a login or refresh answers.

A family is one session: the token a login issues and every token rotated
from it. The DDL lives in the Alembic migrations.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from sqlalchemy import Column, DateTime, LargeBinary, Table, Text, Uuid
from sqlalchemy.dialects.postgresql import ARRAY

from comfyserve.auth.db import metadata

REFRESH_TOKEN_PREFIX = "csr_"

refresh_families = Table(
    "refresh_families",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("user_id", Uuid, nullable=False),
    Column("scopes", ARRAY(Text), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("revoked_at", DateTime(timezone=True)),
)

refresh_tokens = Table(
    "refresh_tokens",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("family_id", Uuid, nullable=False),
    Column("token_hash", LargeBinary, nullable=False),
    Column("client_address", Text),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("used_at", DateTime(timezone=True)),
)


@dataclass(frozen=True, slots=True)
class PresentedToken:
    """A stored refresh token and its family, as a refresh finds them."""

    token_id: UUID
    family_id: UUID
    user_id: UUID
    scopes: frozenset[str]
    expires_at: datetime
    used_at: datetime | None
    family_revoked_at: datetime | None


@dataclass(frozen=True, slots=True)
class TokenPair:
    access_token: str
    refresh_token: str
    expires_in: int
    scopes: frozenset[str]
