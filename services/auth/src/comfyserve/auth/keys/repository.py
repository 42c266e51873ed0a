"""Every query on API keys. Never commits."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import case, delete, false, func, insert, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from comfyserve.auth.db import AnyRow
from comfyserve.auth.keys.models import BOOTSTRAP_KEY_NAME, ApiKey, ApiKeyKind, api_keys
from comfyserve.auth.tenants.models import tenants
from comfyserve.contracts.scopes import SERVICE_SCOPE

_LISTED = [column for column in api_keys.c if column.name != "secret_hash"]


def _key(row: AnyRow) -> ApiKey:
    return ApiKey(
        id=row.id,
        kind=ApiKeyKind(row.kind),
        tenant_id=row.tenant_id,
        service_name=row.service_name,
        name=row.name,
        prefix=row.prefix,
        scopes=frozenset(row.scopes),
        created_by=row.created_by,
        created_at=row.created_at,
        expires_at=row.expires_at,
        last_used_at=row.last_used_at,
        revoked_at=row.revoked_at,
        rate_per_minute=row.rate_per_minute,
        rate_burst=row.rate_burst,
    )


def _active(now: datetime) -> Any:
    return (
        api_keys.c.revoked_at.is_(None),
        or_(api_keys.c.expires_at.is_(None), api_keys.c.expires_at > now),
    )


async def add(conn: AsyncConnection, key: ApiKey, secret_hash: bytes) -> None:
    await conn.execute(
        insert(api_keys).values(
            id=key.id,
            kind=key.kind.value,
            tenant_id=key.tenant_id,
            service_name=key.service_name,
            name=key.name,
            prefix=key.prefix,
            secret_hash=secret_hash,
            scopes=sorted(key.scopes),
            created_by=key.created_by,
            created_at=key.created_at,
            expires_at=key.expires_at,
            rate_per_minute=key.rate_per_minute,
            rate_burst=key.rate_burst,
        )
    )


async def by_secret(
    conn: AsyncConnection, secret_hash: bytes
) -> tuple[ApiKey, bool] | None:
    """The key with this digest and whether its tenant is suspended: one
    query, through the unique index on the digest."""
    row = (
        await conn.execute(
            select(
                *_LISTED,
                func.coalesce(tenants.c.suspended, false()).label("suspended"),
            )
            .select_from(
                api_keys.outerjoin(tenants, tenants.c.id == api_keys.c.tenant_id)
            )
            .where(api_keys.c.secret_hash == secret_hash)
        )
    ).first()
    return None if row is None else (_key(row), bool(row.suspended))


async def touch(
    conn: AsyncConnection, key_id: UUID, now: datetime, stale_before: datetime
) -> None:
    """Records a use, unless one since `stale_before` is recorded already
    (another instance may have done it meanwhile)."""
    await conn.execute(
        update(api_keys)
        .where(
            api_keys.c.id == key_id,
            or_(
                api_keys.c.last_used_at.is_(None),
                api_keys.c.last_used_at < stale_before,
            ),
        )
        .values(last_used_at=now)
    )


async def count_active(conn: AsyncConnection, tenant_id: UUID, now: datetime) -> int:
    count: int = (
        await conn.scalar(
            select(func.count())
            .select_from(api_keys)
            .where(api_keys.c.tenant_id == tenant_id, *_active(now))
        )
        or 0
    )
    return count


async def of_tenant(
    conn: AsyncConnection, tenant_id: UUID, *, include_inactive: bool, now: datetime
) -> Sequence[ApiKey]:
    """The tenant's keys, newest first."""
    query = (
        select(*_LISTED)
        .where(api_keys.c.tenant_id == tenant_id)
        .order_by(api_keys.c.created_at.desc(), api_keys.c.id.desc())
    )
    if not include_inactive:
        query = query.where(*_active(now))
    return [_key(row) for row in await conn.execute(query)]


async def get(conn: AsyncConnection, key_id: UUID) -> ApiKey | None:
    row = (await conn.execute(select(*_LISTED).where(api_keys.c.id == key_id))).first()
    return None if row is None else _key(row)


async def revoke(conn: AsyncConnection, key_id: UUID, now: datetime) -> ApiKey:
    """Revokes the key (a revoked one keeps its first revocation time)."""
    row = (
        await conn.execute(
            update(api_keys)
            .where(api_keys.c.id == key_id)
            .values(revoked_at=func.coalesce(api_keys.c.revoked_at, now))
            .returning(*_LISTED)
        )
    ).one()
    return _key(row)


async def bootstrap_key(conn: AsyncConnection, tenant_id: UUID) -> ApiKey | None:
    """The tenant's key made at bootstrap, while it is not revoked."""
    row = (
        await conn.execute(
            select(*_LISTED).where(
                api_keys.c.tenant_id == tenant_id,
                api_keys.c.created_by.is_(None),
                api_keys.c.name == BOOTSTRAP_KEY_NAME,
                api_keys.c.revoked_at.is_(None),
            )
        )
    ).first()
    return None if row is None else _key(row)


async def put_service_key(
    conn: AsyncConnection,
    *,
    key_id: UUID,
    service: str,
    prefix: str,
    secret_hash: bytes,
    now: datetime,
) -> None:
    """The service's key with this secret. A revoked key given the same secret
    again stays revoked: only a new secret brings a service back."""
    same = api_keys.c.secret_hash == secret_hash
    statement = (
        pg_insert(api_keys)
        .values(
            id=key_id,
            kind=ApiKeyKind.SERVICE.value,
            service_name=service,
            name=service,
            prefix=prefix,
            secret_hash=secret_hash,
            scopes=[SERVICE_SCOPE],
            created_at=now,
            rate_per_minute=0,
            rate_burst=0,
        )
        .on_conflict_do_update(
            index_elements=[api_keys.c.service_name],
            set_={
                "prefix": prefix,
                "secret_hash": secret_hash,
                "scopes": [SERVICE_SCOPE],
                "created_at": case((same, api_keys.c.created_at), else_=now),
                "revoked_at": case((same, api_keys.c.revoked_at), else_=None),
            },
        )
    )
    await conn.execute(statement)


async def delete_services_except(
    conn: AsyncConnection, services: Collection[str]
) -> Sequence[str]:
    """Deletes the keys of services no longer configured; their names. (Gone
    rather than revoked: configured again, a service starts afresh.)"""
    query = delete(api_keys).where(api_keys.c.kind == ApiKeyKind.SERVICE.value)
    if services:
        query = query.where(api_keys.c.service_name.not_in(services))
    rows = await conn.execute(query.returning(api_keys.c.service_name))
    return [row.service_name for row in rows]
