"""Every query on refresh tokens and their families. Never commits."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from sqlalchemy import delete, exists, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from comfyserve.auth.tokens.models import (
    PresentedToken,
    refresh_families,
    refresh_tokens,
)


async def add_family(
    conn: AsyncConnection,
    *,
    family_id: UUID,
    user_id: UUID,
    scopes: frozenset[str],
    now: datetime,
) -> None:
    await conn.execute(
        insert(refresh_families).values(
            id=family_id, user_id=user_id, scopes=sorted(scopes), created_at=now
        )
    )


async def add_token(
    conn: AsyncConnection,
    *,
    token_id: UUID,
    family_id: UUID,
    token_hash: bytes,
    client_address: str | None,
    now: datetime,
    expires_at: datetime,
) -> None:
    await conn.execute(
        insert(refresh_tokens).values(
            id=token_id,
            family_id=family_id,
            token_hash=token_hash,
            client_address=client_address,
            created_at=now,
            expires_at=expires_at,
        )
    )


async def lock_presented(
    conn: AsyncConnection, token_hash: bytes
) -> PresentedToken | None:
    """The token with this hash and its family, the token locked until the
    transaction ends, so two refreshes of one token are judged one at a time."""
    row = (
        await conn.execute(
            select(
                refresh_tokens.c.id,
                refresh_tokens.c.family_id,
                refresh_families.c.user_id,
                refresh_families.c.scopes,
                refresh_tokens.c.expires_at,
                refresh_tokens.c.used_at,
                refresh_families.c.revoked_at,
            )
            .join(
                refresh_families,
                refresh_families.c.id == refresh_tokens.c.family_id,
            )
            .where(refresh_tokens.c.token_hash == token_hash)
            .with_for_update(of=refresh_tokens)
        )
    ).first()
    if row is None:
        return None
    return PresentedToken(
        token_id=row[0],
        family_id=row[1],
        user_id=row[2],
        scopes=frozenset(row[3]),
        expires_at=row[4],
        used_at=row[5],
        family_revoked_at=row[6],
    )


async def mark_used(conn: AsyncConnection, token_id: UUID, now: datetime) -> None:
    await conn.execute(
        update(refresh_tokens)
        .where(refresh_tokens.c.id == token_id)
        .values(used_at=now)
    )


async def family_of(
    conn: AsyncConnection, token_hash: bytes
) -> tuple[UUID, UUID] | None:
    """(family id, user id) of the token with this hash."""
    row = (
        await conn.execute(
            select(refresh_families.c.id, refresh_families.c.user_id)
            .join(
                refresh_tokens,
                refresh_tokens.c.family_id == refresh_families.c.id,
            )
            .where(refresh_tokens.c.token_hash == token_hash)
        )
    ).first()
    return None if row is None else (row[0], row[1])


async def revoke_family(conn: AsyncConnection, family_id: UUID, now: datetime) -> None:
    await conn.execute(
        update(refresh_families)
        .where(
            refresh_families.c.id == family_id,
            refresh_families.c.revoked_at.is_(None),
        )
        .values(revoked_at=now)
    )


async def delete_expired(conn: AsyncConnection, now: datetime) -> int:
    """Drops tokens past their expiry (no longer useful even to detect reuse)
    and the families left without a token; the number of tokens dropped."""
    dropped = await conn.execute(
        delete(refresh_tokens).where(refresh_tokens.c.expires_at < now)
    )
    await conn.execute(
        delete(refresh_families).where(
            ~exists().where(refresh_tokens.c.family_id == refresh_families.c.id)
        )
    )
    return dropped.rowcount
