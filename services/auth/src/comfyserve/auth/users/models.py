"""The `users` and `login_throttle` tables, roles, and the user record.

The DDL (indexes included) lives in the Alembic migrations.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from uuid import UUID

from sqlalchemy import Boolean, Column, DateTime, Integer, Table, Text, Uuid

from comfyserve.auth.db import metadata


class Role(StrEnum):
    OWNER = "owner"
    MEMBER = "member"


users = Table(
    "users",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("tenant_id", Uuid, nullable=False),
    Column("email", Text, nullable=False),
    Column("password_hash", Text, nullable=False),
    Column("role", Text, nullable=False),
    Column("is_admin", Boolean, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

login_throttle = Table(
    "login_throttle",
    metadata,
    Column("key", Text, primary_key=True),
    Column("window_started_at", DateTime(timezone=True), nullable=False),
    Column("attempts", Integer, nullable=False),
)


@dataclass(frozen=True, slots=True)
class User:
    id: UUID
    tenant_id: UUID
    email: str
    role: Role
    is_admin: bool
    created_at: datetime

    @property
    def subject(self) -> str:
        return f"user:{self.id}"


@dataclass(frozen=True, slots=True)
class StoredUser:
    """A user with its password hash: what login needs, and nothing else
    should see."""

    user: User
    password_hash: str
