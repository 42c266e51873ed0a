"""Every query on endpoints and signing secrets; the caller's unit of work commits."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from comfyserve.notifier.endpoints.models import Endpoint, EndpointChanges, Secrets
from comfyserve.notifier.paging import Position

_ENDPOINT_COLUMNS = (
    "id, tenant_id, url, event_types, description, enabled, disabled_reason, "
    "created_at, updated_at"
)


def _endpoint(row: Any) -> Endpoint:
    return Endpoint(
        id=row.id,
        tenant_id=row.tenant_id,
        url=row.url,
        event_types=tuple(row.event_types),
        description=row.description,
        enabled=row.enabled,
        disabled_reason=row.disabled_reason,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _secrets(row: Any) -> Secrets:
    return Secrets(
        current=row.secret,
        previous=row.previous_secret,
        previous_expires_at=row.previous_expires_at,
        created_at=row.created_at,
    )


async def insert_endpoint(
    conn: AsyncConnection,
    *,
    endpoint_id: UUID,
    tenant_id: str,
    url: str,
    event_types: Sequence[str],
    description: str,
    secret: str,
) -> Endpoint:
    result = await conn.execute(
        text(
            "INSERT INTO endpoints (id, tenant_id, url, event_types, description, "
            "secret) VALUES (:id, :tenant, :url, :types, :description, :secret) "
            f"RETURNING {_ENDPOINT_COLUMNS}"
        ),
        {
            "id": endpoint_id,
            "tenant": tenant_id,
            "url": url,
            "types": list(event_types),
            "description": description,
            "secret": secret,
        },
    )
    return _endpoint(result.one())


async def get_endpoint(
    conn: AsyncConnection, tenant_id: str, endpoint_id: UUID
) -> Endpoint | None:
    result = await conn.execute(
        text(
            f"SELECT {_ENDPOINT_COLUMNS} FROM endpoints "
            "WHERE id = :id AND tenant_id = :tenant"
        ),
        {"id": endpoint_id, "tenant": tenant_id},
    )
    row = result.one_or_none()
    return None if row is None else _endpoint(row)


async def list_endpoints(
    conn: AsyncConnection, tenant_id: str, limit: int, after: Position | None
) -> list[Endpoint]:
    where = "tenant_id = :tenant"
    params: dict[str, Any] = {"tenant": tenant_id, "limit": limit}
    if after is not None:
        where += " AND (created_at, id) < (:at, CAST(:after AS uuid))"
        params.update(at=after.created_at, after=after.id)
    result = await conn.execute(
        text(
            f"SELECT {_ENDPOINT_COLUMNS} FROM endpoints WHERE {where} "
            "ORDER BY created_at DESC, id DESC LIMIT :limit"
        ),
        params,
    )
    return [_endpoint(row) for row in result]


async def enabled_endpoints(conn: AsyncConnection, tenant_id: str) -> list[Endpoint]:
    result = await conn.execute(
        text(
            f"SELECT {_ENDPOINT_COLUMNS} FROM endpoints "
            "WHERE tenant_id = :tenant AND enabled ORDER BY created_at, id"
        ),
        {"tenant": tenant_id},
    )
    return [_endpoint(row) for row in result]


async def update_endpoint(
    conn: AsyncConnection, tenant_id: str, endpoint_id: UUID, changes: EndpointChanges
) -> Endpoint | None:
    sets = ["updated_at = now()"]
    params: dict[str, Any] = {"id": endpoint_id, "tenant": tenant_id}
    if changes.url is not None:
        sets.append("url = :url")
        params["url"] = changes.url
    if changes.event_types is not None:
        sets.append("event_types = :types")
        params["types"] = list(changes.event_types)
    if changes.description is not None:
        sets.append("description = :description")
        params["description"] = changes.description
    if changes.enabled is not None:
        # Enabling clears why the service disabled it; disabling by hand
        # gives no reason.
        sets.extend(["enabled = :enabled", "disabled_reason = ''"])
        params["enabled"] = changes.enabled
    result = await conn.execute(
        text(
            f"UPDATE endpoints SET {', '.join(sets)} "
            f"WHERE id = :id AND tenant_id = :tenant RETURNING {_ENDPOINT_COLUMNS}"
        ),
        params,
    )
    row = result.one_or_none()
    return None if row is None else _endpoint(row)


async def disable_endpoint(
    conn: AsyncConnection, endpoint_id: UUID, reason: str
) -> None:
    await conn.execute(
        text(
            "UPDATE endpoints SET enabled = false, disabled_reason = :reason, "
            "updated_at = now() WHERE id = :id"
        ),
        {"id": endpoint_id, "reason": reason},
    )


async def delete_endpoint(
    conn: AsyncConnection, tenant_id: str, endpoint_id: UUID
) -> bool:
    result = await conn.execute(
        text("DELETE FROM endpoints WHERE id = :id AND tenant_id = :tenant"),
        {"id": endpoint_id, "tenant": tenant_id},
    )
    return bool(result.rowcount)


async def rotate_endpoint_secret(
    conn: AsyncConnection,
    tenant_id: str,
    endpoint_id: UUID,
    secret: str,
    previous_until: datetime,
) -> Endpoint | None:
    result = await conn.execute(
        text(
            "UPDATE endpoints SET previous_secret = secret, "
            "previous_expires_at = :until, secret = :secret, updated_at = now() "
            f"WHERE id = :id AND tenant_id = :tenant RETURNING {_ENDPOINT_COLUMNS}"
        ),
        {
            "id": endpoint_id,
            "tenant": tenant_id,
            "secret": secret,
            "until": previous_until,
        },
    )
    row = result.one_or_none()
    return None if row is None else _endpoint(row)


async def endpoint_secrets(conn: AsyncConnection, endpoint_id: UUID) -> Secrets | None:
    result = await conn.execute(
        text(
            "SELECT secret, previous_secret, previous_expires_at, updated_at "
            "AS created_at FROM endpoints WHERE id = :id"
        ),
        {"id": endpoint_id},
    )
    row = result.one_or_none()
    return None if row is None else _secrets(row)


async def signing_secrets(conn: AsyncConnection, tenant_id: str) -> Secrets | None:
    result = await conn.execute(
        text(
            "SELECT secret, previous_secret, previous_expires_at, created_at "
            "FROM signing_secrets WHERE tenant_id = :tenant"
        ),
        {"tenant": tenant_id},
    )
    row = result.one_or_none()
    return None if row is None else _secrets(row)


async def ensure_signing_secret(
    conn: AsyncConnection, tenant_id: str, secret: str
) -> Secrets:
    """The tenant's secrets, `secret` becoming them when it has none yet."""
    await conn.execute(
        text(
            "INSERT INTO signing_secrets (tenant_id, secret) VALUES (:tenant, :secret) "
            "ON CONFLICT (tenant_id) DO NOTHING"
        ),
        {"tenant": tenant_id, "secret": secret},
    )
    found = await signing_secrets(conn, tenant_id)
    assert found is not None  # inserted, or there already
    return found


async def rotate_signing_secret(
    conn: AsyncConnection, tenant_id: str, secret: str, previous_until: datetime
) -> Secrets:
    result = await conn.execute(
        text(
            "INSERT INTO signing_secrets (tenant_id, secret) VALUES (:tenant, :secret) "
            "ON CONFLICT (tenant_id) DO UPDATE SET "
            "previous_secret = signing_secrets.secret, previous_expires_at = :until, "
            "secret = EXCLUDED.secret, created_at = now() "
            "RETURNING secret, previous_secret, previous_expires_at, created_at"
        ),
        {"tenant": tenant_id, "secret": secret, "until": previous_until},
    )
    return _secrets(result.one())
