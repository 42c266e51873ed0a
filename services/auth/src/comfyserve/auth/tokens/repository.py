"""Every query on refresh tokens and their families. Never commits."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from sqlalchemy import delete, exists, func, insert, select, update
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


async def delete_expired(conn: AsyncConnection, now: datetime, limit: int) -> int:
    """Drops up to `limit` tokens past their expiry (no longer useful even to
    detect reuse), oldest first, and the families they leave without a token;
    the number of tokens dropped.

    One statement, so that no family is left behind should the process stop
    between two: only the families of the dropped tokens are checked (never a
    scan of every session), and since the check reads the tokens as they were
    before the statement, the dropped ones are left out of it by id."""
    expired = (
        select(refresh_tokens.c.id)
        .where(refresh_tokens.c.expires_at < now)
        .order_by(refresh_tokens.c.expires_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    gone = (
        delete(refresh_tokens)
        .where(refresh_tokens.c.id.in_(expired))
        .returning(refresh_tokens.c.id, refresh_tokens.c.family_id)
        .cte("gone")
    )
    kept = exists().where(
        refresh_tokens.c.family_id == refresh_families.c.id,
        refresh_tokens.c.id.not_in(select(gone.c.id)),
    )
    emptied = (
        delete(refresh_families)
        .where(refresh_families.c.id.in_(select(gone.c.family_id)), ~kept)
        .cte("emptied")
    )
    statement = select(func.count()).select_from(gone).add_cte(emptied)
    return int((await conn.execute(statement)).scalar_one())
