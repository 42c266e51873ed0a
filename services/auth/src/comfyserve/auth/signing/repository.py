"""Every query on the signing keys. Never commits."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from comfyserve.auth.signing.models import SigningKey, signing_keys

_PUBLIC = (
    signing_keys.c.kid,
    signing_keys.c.public_key,
    signing_keys.c.created_at,
    signing_keys.c.retired_at,
)
_ACTIVE = signing_keys.c.retired_at.is_(None)


async def add(
    conn: AsyncConnection,
    *,
    kid: str,
    public_key: bytes,
    private_key: bytes,
    created_at: datetime,
) -> SigningKey:
    await conn.execute(
        insert(signing_keys).values(
            kid=kid,
            public_key=public_key,
            private_key=private_key,
            created_at=created_at,
        )
    )
    return SigningKey(kid, public_key, created_at, None)


async def newest_active(conn: AsyncConnection) -> tuple[str, bytes] | None:
    """The signing key: kid and encrypted private key."""
    row = (
        await conn.execute(
            select(signing_keys.c.kid, signing_keys.c.private_key)
            .where(_ACTIVE)
            .order_by(signing_keys.c.created_at.desc(), signing_keys.c.kid.desc())
            .limit(1)
        )
    ).first()
    return None if row is None else (row.kid, row.private_key)


async def active(conn: AsyncConnection) -> Sequence[SigningKey]:
    """Every key not retired, the signing key first."""
    rows = await conn.execute(
        select(*_PUBLIC)
        .where(_ACTIVE)
        .order_by(signing_keys.c.created_at.desc(), signing_keys.c.kid.desc())
    )
    return [SigningKey(*row) for row in rows]


async def active_public_key(conn: AsyncConnection, kid: str) -> bytes | None:
    key: bytes | None = await conn.scalar(
        select(signing_keys.c.public_key).where(signing_keys.c.kid == kid, _ACTIVE)
    )
    return key


async def get(conn: AsyncConnection, kid: str) -> SigningKey | None:
    row = (
        await conn.execute(select(*_PUBLIC).where(signing_keys.c.kid == kid))
    ).first()
    return None if row is None else SigningKey(*row)


async def count_active(conn: AsyncConnection) -> int:
    count: int = (
        await conn.scalar(select(func.count()).select_from(signing_keys).where(_ACTIVE))
        or 0
    )
    return count


async def retire(conn: AsyncConnection, kid: str, now: datetime) -> None:
    await conn.execute(
        update(signing_keys).where(signing_keys.c.kid == kid).values(retired_at=now)
    )
