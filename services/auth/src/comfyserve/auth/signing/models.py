"""The `signing_keys` table: Ed25519 keys access tokens are signed with."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Column, DateTime, LargeBinary, Table, Text

from comfyserve.auth.db import metadata

signing_keys = Table(
    "signing_keys",
    metadata,
    Column("kid", Text, primary_key=True),
    Column("public_key", LargeBinary, nullable=False),
    Column("private_key", LargeBinary, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("retired_at", DateTime(timezone=True)),
)


@dataclass(frozen=True, slots=True)
class SigningKey:
    """A key without its private half."""

    kid: str
    public_key: bytes
    created_at: datetime
    retired_at: datetime | None
