"""Every query on users and the login throttle. Never commits."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from sqlalchemy import case, delete, func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from comfyserve.auth.db import AnyRow
from comfyserve.auth.users.models import Role, StoredUser, User, login_throttle, users

_USER = (
    users.c.id,
    users.c.tenant_id,
    users.c.email,
    users.c.role,
    users.c.is_admin,
    users.c.created_at,
)


def _user(row: AnyRow) -> User:
    return User(
        id=row.id,
        tenant_id=row.tenant_id,
        email=row.email,
        role=Role(row.role),
        is_admin=row.is_admin,
        created_at=row.created_at,
    )


async def add(conn: AsyncConnection, user: User, password_hash: str) -> None:
    await conn.execute(
        insert(users).values(
            id=user.id,
            tenant_id=user.tenant_id,
            email=user.email,
            password_hash=password_hash,
            role=user.role.value,
            is_admin=user.is_admin,
            created_at=user.created_at,
        )
    )


async def by_email(conn: AsyncConnection, email: str) -> StoredUser | None:
    row = (
        await conn.execute(
            select(*_USER, users.c.password_hash).where(users.c.email == email)
        )
    ).first()
    return None if row is None else StoredUser(_user(row), row.password_hash)


async def get(conn: AsyncConnection, user_id: UUID) -> User | None:
    row = (await conn.execute(select(*_USER).where(users.c.id == user_id))).first()
    return None if row is None else _user(row)


async def set_password_hash(
    conn: AsyncConnection, user_id: UUID, password_hash: str
) -> None:
    await conn.execute(
        update(users).where(users.c.id == user_id).values(password_hash=password_hash)
    )


async def make_admin(conn: AsyncConnection, user_id: UUID) -> None:
    await conn.execute(update(users).where(users.c.id == user_id).values(is_admin=True))


async def count_attempt(
    conn: AsyncConnection, key: str, now: datetime, window_start: datetime
) -> tuple[datetime, int]:
    """One more attempt under `key`, in a window that starts again when the
    last one began before `window_start`: (window start, attempts in it)."""
    expired = login_throttle.c.window_started_at <= window_start
    statement = (
        pg_insert(login_throttle)
        .values(key=key, window_started_at=now, attempts=1)
        .on_conflict_do_update(
            index_elements=[login_throttle.c.key],
            set_={
                "attempts": case((expired, 1), else_=login_throttle.c.attempts + 1),
                "window_started_at": case(
                    (expired, now), else_=login_throttle.c.window_started_at
                ),
            },
        )
        .returning(login_throttle.c.window_started_at, login_throttle.c.attempts)
    )
    row = (await conn.execute(statement)).one()
    return row.window_started_at, row.attempts


async def forget_attempt(conn: AsyncConnection, key: str) -> None:
    """Takes back one counted attempt (it succeeded)."""
    await conn.execute(
        update(login_throttle)
        .where(login_throttle.c.key == key)
        .values(attempts=func.greatest(login_throttle.c.attempts - 1, 0))
    )


async def forget_attempts(conn: AsyncConnection, key: str) -> None:
    await conn.execute(delete(login_throttle).where(login_throttle.c.key == key))


async def delete_stale_attempts(
    conn: AsyncConnection, window_start: datetime, limit: int
) -> int:
    """Drops up to `limit` login windows that started by `window_start`."""
    stale = (
        select(login_throttle.c.key)
        .where(login_throttle.c.window_started_at <= window_start)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    dropped = await conn.execute(
        delete(login_throttle).where(login_throttle.c.key.in_(stale))
    )
    return int(dropped.rowcount)
