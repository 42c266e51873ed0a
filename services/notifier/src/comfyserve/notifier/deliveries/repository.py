"""Every query on deliveries and attempts; the caller's unit of work commits."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from comfyserve.notifier.deliveries.models import (
    Attempt,
    Claimed,
    Delivery,
    DeliveryFilter,
    DeliveryStatus,
    NewDelivery,
    Outcome,
)
from comfyserve.notifier.paging import Position

_COLUMNS = (
    "id, tenant_id, job_id, event_type, event_time, endpoint_id, target_key, url, "
    "status, "
    "dead_reason, attempt_count, failures, next_attempt_at, created_at, traceparent"
)


def _delivery(row: Any) -> Delivery:
    return Delivery(
        id=row.id,
        tenant_id=row.tenant_id,
        job_id=row.job_id,
        event_type=row.event_type,
        event_time=row.event_time,
        endpoint_id=row.endpoint_id,
        target_key=row.target_key,
        url=row.url,
        status=DeliveryStatus(row.status),
        dead_reason=row.dead_reason,
        attempt_count=row.attempt_count,
        failures=row.failures,
        next_attempt_at=row.next_attempt_at,
        created_at=row.created_at,
        traceparent=row.traceparent,
    )


async def insert(conn: AsyncConnection, deliveries: Sequence[NewDelivery]) -> int:
    """Records the deliveries, due now; those already recorded for their event
    and target are left alone. Returns how many were new."""
    new = 0
    for delivery in deliveries:
        result = await conn.execute(
            text(
                "INSERT INTO deliveries (id, tenant_id, job_id, event_id, event_type, "
                "event_time, endpoint_id, target_key, url, payload, traceparent, "
                "next_attempt_at) VALUES (:id, :tenant, :job, :event, :type, :time, "
                ":endpoint, :key, :url, CAST(:payload AS jsonb), :traceparent, now()) "
                "ON CONFLICT (event_id, target_key) DO NOTHING"
            ),
            {
                "id": delivery.id,
                "tenant": delivery.tenant_id,
                "job": delivery.job_id,
                "event": delivery.event_id,
                "type": delivery.event_type,
                "time": delivery.event_time,
                "endpoint": delivery.endpoint_id,
                "key": delivery.target_key,
                "url": delivery.url,
                "payload": json.dumps(delivery.payload),
                "traceparent": delivery.traceparent,
            },
        )
        new += result.rowcount
    return new


async def claim_due(
    conn: AsyncConnection,
    *,
    claim: UUID,
    limit: int,
    per_target: int,
    lease_seconds: float,
) -> list[Claimed]:
    """Claims up to `limit` due deliveries for `lease_seconds`, never more
    than `per_target` in flight per target (counting live claims of every
    instance); rows another instance is claiming are skipped, not waited for."""
    result = await conn.execute(
        text(
            f"""
            WITH in_flight AS (
                SELECT target_key, count(*) AS n FROM deliveries
                WHERE claimed_until > now() GROUP BY target_key
            ), candidates AS (
                SELECT d.id, coalesce(f.n, 0) + row_number() OVER (
                    PARTITION BY d.target_key ORDER BY d.next_attempt_at, d.id
                ) AS slot
                FROM deliveries d LEFT JOIN in_flight f USING (target_key)
                WHERE d.status = 'pending' AND d.next_attempt_at <= now()
                  AND (d.claimed_until IS NULL OR d.claimed_until <= now())
            ), locked AS (
                SELECT id FROM deliveries
                WHERE id IN (SELECT id FROM candidates WHERE slot <= :per_target)
                  AND status = 'pending'
                  AND (claimed_until IS NULL OR claimed_until <= now())
                ORDER BY next_attempt_at
                LIMIT :limit
                FOR UPDATE SKIP LOCKED
            )
            UPDATE deliveries SET claim = :claim,
                claimed_until = now() + make_interval(secs => :lease)
            WHERE id IN (SELECT id FROM locked)
            RETURNING {_COLUMNS}
            """
        ),
        {
            "claim": claim,
            "limit": limit,
            "per_target": per_target,
            "lease": lease_seconds,
        },
    )
    return [Claimed(_delivery(row), claim) for row in result]


async def confirm(
    conn: AsyncConnection, claimed: Claimed, lease_seconds: float
) -> bool:
    """Renews a claim just before its request goes out; False when it lapsed
    (the delivery may be another instance's now, and must not be sent)."""
    result = await conn.execute(
        text(
            "UPDATE deliveries "
            "SET claimed_until = now() + make_interval(secs => :lease) "
            "WHERE id = :id AND claim = :claim AND status = 'pending'"
        ),
        {"id": claimed.delivery.id, "claim": claimed.claim, "lease": lease_seconds},
    )
    return bool(result.rowcount)


async def record_outcome(
    conn: AsyncConnection, claimed: Claimed, outcome: Outcome
) -> bool:
    """Records an attempt and what follows from it, if the claim still holds;
    False when it lapsed (another instance may be attempting it now)."""
    result = await conn.execute(
        text(
            "UPDATE deliveries SET status = :status, dead_reason = :reason, "
            "next_attempt_at = :next, attempt_count = attempt_count + 1, "
            "failures = failures + :failed, claim = NULL, claimed_until = NULL, "
            "updated_at = now() WHERE id = :id AND claim = :claim "
            "RETURNING attempt_count"
        ),
        {
            "id": claimed.delivery.id,
            "claim": claimed.claim,
            "status": outcome.status.value,
            "reason": outcome.dead_reason,
            "next": outcome.next_attempt_at,
            "failed": int(outcome.failed),
        },
    )
    number = result.scalar_one_or_none()
    if number is None:
        return False
    attempt = outcome.attempt
    await conn.execute(
        text(
            "INSERT INTO delivery_attempts (delivery_id, number, started_at, "
            "status_code, latency_ms, response_excerpt, error) VALUES "
            "(:id, :number, :started, :code, :latency, :excerpt, :error)"
        ),
        {
            "id": claimed.delivery.id,
            "number": number,
            "started": attempt.started_at,
            "code": attempt.status_code,
            "latency": attempt.latency_ms,
            "excerpt": attempt.response_excerpt,
            "error": attempt.error,
        },
    )
    return True


async def release(
    conn: AsyncConnection, claimed: Claimed, next_attempt_at: datetime
) -> None:
    """Gives a claim back without an attempt (the payload could not be made)."""
    await conn.execute(
        text(
            "UPDATE deliveries SET claim = NULL, claimed_until = NULL, "
            "next_attempt_at = :next, updated_at = now() "
            "WHERE id = :id AND claim = :claim"
        ),
        {"id": claimed.delivery.id, "claim": claimed.claim, "next": next_attempt_at},
    )


async def kill(conn: AsyncConnection, claimed: Claimed, reason: str) -> bool:
    """Ends a delivery without an attempt (its endpoint is gone or disabled)."""
    result = await conn.execute(
        text(
            "UPDATE deliveries SET status = 'dead', dead_reason = :reason, "
            "next_attempt_at = NULL, claim = NULL, claimed_until = NULL, "
            "updated_at = now() WHERE id = :id AND claim = :claim"
        ),
        {"id": claimed.delivery.id, "claim": claimed.claim, "reason": reason},
    )
    return bool(result.rowcount)


async def replay(conn: AsyncConnection, tenant_id: str, delivery_id: str) -> bool:
    result = await conn.execute(
        text(
            "UPDATE deliveries SET status = 'pending', dead_reason = '', failures = 0, "
            "next_attempt_at = now(), claim = NULL, claimed_until = NULL, "
            "updated_at = now() WHERE id = :id AND tenant_id = :tenant"
        ),
        {"id": delivery_id, "tenant": tenant_id},
    )
    return bool(result.rowcount)


async def get(
    conn: AsyncConnection, tenant_id: str, delivery_id: str
) -> Delivery | None:
    result = await conn.execute(
        text(
            f"SELECT {_COLUMNS} FROM deliveries WHERE id = :id AND tenant_id = :tenant"
        ),
        {"id": delivery_id, "tenant": tenant_id},
    )
    row = result.one_or_none()
    return None if row is None else _delivery(row)


async def attempts(conn: AsyncConnection, delivery_id: str) -> list[Attempt]:
    result = await conn.execute(
        text(
            "SELECT number, started_at, status_code, latency_ms, response_excerpt, "
            "error FROM delivery_attempts WHERE delivery_id = :id ORDER BY number"
        ),
        {"id": delivery_id},
    )
    return [
        Attempt(
            number=row.number,
            started_at=row.started_at,
            status_code=row.status_code,
            latency_ms=row.latency_ms,
            response_excerpt=row.response_excerpt,
            error=row.error,
        )
        for row in result
    ]


async def list_page(
    conn: AsyncConnection,
    tenant_id: str,
    where: DeliveryFilter,
    limit: int,
    after: Position | None,
) -> list[Delivery]:
    clauses = ["tenant_id = :tenant"]
    params: dict[str, Any] = {"tenant": tenant_id, "limit": limit}
    if where.job_id:
        clauses.append("job_id = :job")
        params["job"] = where.job_id
    if where.status is not None:
        clauses.append("status = :status")
        params["status"] = where.status.value
    if where.endpoint_id is not None:
        clauses.append("endpoint_id = :endpoint")
        params["endpoint"] = where.endpoint_id
    if after is not None:
        clauses.append("(created_at, id) < (:at, :after)")
        params.update(at=after.created_at, after=after.id)
    result = await conn.execute(
        text(
            f"SELECT {_COLUMNS} FROM deliveries WHERE {' AND '.join(clauses)} "
            "ORDER BY created_at DESC, id DESC LIMIT :limit"
        ),
        params,
    )
    return [_delivery(row) for row in result]


async def due_count(conn: AsyncConnection) -> int:
    result = await conn.execute(
        text(
            "SELECT count(*) FROM deliveries "
            "WHERE status = 'pending' AND next_attempt_at <= now()"
        )
    )
    return int(result.scalar_one())


async def next_due(conn: AsyncConnection) -> datetime | None:
    """When the earliest pending delivery that nobody holds falls due."""
    result = await conn.execute(
        text(
            "SELECT min(greatest(next_attempt_at, coalesce(claimed_until, "
            "next_attempt_at))) FROM deliveries WHERE status = 'pending'"
        )
    )
    found: datetime | None = result.scalar_one()
    return found


async def delete_finished_before(
    conn: AsyncConnection, before: datetime, limit: int
) -> int:
    """Deletes up to `limit` deliveries, with their attempts, that succeeded or
    went dead before `before`, oldest first, skipping any another instance
    holds; how many it deleted."""
    result = await conn.execute(
        text(
            "DELETE FROM deliveries WHERE id IN ("
            " SELECT id FROM deliveries"
            " WHERE status <> 'pending' AND updated_at < :before"
            " ORDER BY updated_at LIMIT :limit FOR UPDATE SKIP LOCKED)"
        ),
        {"before": before, "limit": limit},
    )
    return int(result.rowcount)
