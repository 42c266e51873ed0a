"""The delivery log forgets finished deliveries after the retention period,
oldest first and a bounded batch at a time; pending ones stay."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import pytest
from sqlalchemy import text

from comfyserve.notifier.app import App
from comfyserve.notifier.deliveries.retention import DeliveryRetention
from comfyserve.notifier.settings import Settings
from comfyserve.notifier.telemetry import Metrics

from ..conftest import now

pytestmark = pytest.mark.integration


async def add_delivery(app: App, status: str, finished_at: datetime) -> str:
    delivery_id = f"msg_{uuid.uuid4().hex}"
    async with app.engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO deliveries (id, tenant_id, event_id, event_type,"
                " event_time, target_key, url, payload, status, updated_at)"
                " VALUES (:id, 'tenant-r', :event, 'job.completed', :at,"
                " :target, 'https://example.com/hook', '{}', :status, :at)"
            ),
            {
                "id": delivery_id,
                "event": uuid.uuid4(),
                "at": finished_at,
                "target": f"url:{delivery_id}",
                "status": status,
            },
        )
        await conn.execute(
            text(
                "INSERT INTO delivery_attempts"
                " (delivery_id, number, started_at, latency_ms)"
                " VALUES (:id, 1, :at, 5)"
            ),
            {"id": delivery_id, "at": finished_at},
        )
    return delivery_id


async def left(app: App) -> tuple[set[str], set[str]]:
    async with app.engine.connect() as conn:
        deliveries = (await conn.execute(text("SELECT id FROM deliveries"))).all()
        attempts = (
            await conn.execute(text("SELECT delivery_id FROM delivery_attempts"))
        ).all()
    return {row[0] for row in deliveries}, {row[0] for row in attempts}


async def test_finished_deliveries_past_retention_go_oldest_first_in_batches(
    app: App, settings: Settings
):
    # The sweep's own "now" lies past every real one, so the instance's own
    # retention loop, sweeping as of the real now, leaves these rows alone.
    sweep_now = now() + timedelta(days=400)
    expired = sweep_now - timedelta(days=settings.delivery_retention_days + 1)
    old = [
        await add_delivery(app, status, expired + timedelta(seconds=n))
        for n, status in enumerate(["succeeded", "dead", "succeeded", "dead", "dead"])
    ]
    pending = await add_delivery(app, "pending", expired)
    recent = await add_delivery(app, "succeeded", sweep_now - timedelta(days=1))
    metrics = Metrics()
    retention = DeliveryRetention(
        app.engine, settings, metrics, lambda: sweep_now, batch=2, rounds=2
    )

    assert await retention.sweep_once() == 4
    deliveries, attempts = await left(app)
    assert deliveries == attempts == {old[4], pending, recent}

    assert await retention.sweep_once() == 1
    deliveries, attempts = await left(app)
    assert deliveries == attempts == {pending, recent}
    assert metrics.registry.get_sample_value("notifier_deliveries_forgotten_total") == 5
    assert await retention.sweep_once() == 0
