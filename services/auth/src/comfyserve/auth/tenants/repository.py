"""Every query on tenants. Never commits."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import func, insert, or_, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncConnection

from comfyserve.auth.db import AnyRow
from comfyserve.auth.keys.models import api_keys
from comfyserve.auth.tenants.models import Tenant, tenants
from comfyserve.auth.users.models import users


async def add(conn: AsyncConnection, tenant_id: UUID, name: str, now: datetime) -> None:
    await conn.execute(
        insert(tenants).values(id=tenant_id, name=name, suspended=False, created_at=now)
    )


async def suspended(conn: AsyncConnection, tenant_id: UUID) -> bool | None:
    """Whether the tenant is suspended; None when there is no such tenant."""
    value: bool | None = await conn.scalar(
        select(tenants.c.suspended).where(tenants.c.id == tenant_id)
    )
    return value


async def lock_suspended(conn: AsyncConnection, tenant_id: UUID) -> bool | None:
    """`suspended`, with the tenant locked until the transaction ends, so
    its keys are counted and added one creation at a time."""
    value: bool | None = await conn.scalar(
        select(tenants.c.suspended).where(tenants.c.id == tenant_id).with_for_update()
    )
    return value


async def set_suspended(conn: AsyncConnection, tenant_id: UUID, value: bool) -> None:
    await conn.execute(
        update(tenants).where(tenants.c.id == tenant_id).values(suspended=value)
    )


def _summaries(now: datetime) -> Any:
    user_count = (
        select(func.count()).where(users.c.tenant_id == tenants.c.id).scalar_subquery()
    )
    active_keys = (
        select(func.count())
        .where(
            api_keys.c.tenant_id == tenants.c.id,
            api_keys.c.revoked_at.is_(None),
            or_(api_keys.c.expires_at.is_(None), api_keys.c.expires_at > now),
        )
        .scalar_subquery()
    )
    return select(
        tenants.c.id,
        tenants.c.name,
        tenants.c.suspended,
        tenants.c.created_at,
        user_count.label("users"),
        active_keys.label("active_keys"),
    )


def _tenant(row: AnyRow) -> Tenant:
    return Tenant(
        id=row.id,
        name=row.name,
        suspended=row.suspended,
        created_at=row.created_at,
        users=row.users,
        active_keys=row.active_keys,
    )


async def get(conn: AsyncConnection, tenant_id: UUID, now: datetime) -> Tenant | None:
    row = (await conn.execute(_summaries(now).where(tenants.c.id == tenant_id))).first()
    return None if row is None else _tenant(row)


async def page(
    conn: AsyncConnection,
    *,
    after: tuple[datetime, UUID] | None,
    limit: int,
    now: datetime,
) -> Sequence[Tenant]:
    """Tenants oldest first, those after `after` (created_at, id) only."""
    query = _summaries(now).order_by(tenants.c.created_at, tenants.c.id).limit(limit)
    if after is not None:
        query = query.where(tuple_(tenants.c.created_at, tenants.c.id) > tuple_(*after))
    return [_tenant(row) for row in await conn.execute(query)]
