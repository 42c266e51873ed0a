"""Jobs, their event log, the outbox, idempotency keys, workers and catalogs.

Revision ID: 0001
Revises:
Create Date: 2025-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_TS = sa.DateTime(timezone=True)
_PRIORITY_RANK = "CASE priority WHEN 'high' THEN 0 WHEN 'normal' THEN 1 ELSE 2 END"


def upgrade(schema: str) -> None:
    op.create_table(
        "jobs",
        sa.Column("id", sa.Uuid, primary_key=True),
        sa.Column("tenant_id", sa.Text, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("priority", sa.Text, nullable=False),
        sa.Column(
            "priority_rank",
            sa.SmallInteger,
            sa.Computed(_PRIORITY_RANK, persisted=True),
            nullable=False,
        ),
        sa.Column("workflow", JSONB, nullable=False),
        sa.Column("inputs", JSONB, nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("started_at", _TS),
        sa.Column("completed_at", _TS),
        sa.Column("deadline", _TS, nullable=False),
        sa.Column("timeout_seconds", sa.Integer, nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False, server_default="0"),
        sa.Column("worker_id", sa.Text),
        sa.Column("progress", JSONB),
        sa.Column("outputs", JSONB, nullable=False, server_default="[]"),
        sa.Column("error", JSONB),
        sa.Column("metadata", JSONB, nullable=False, server_default="{}"),
        sa.Column("webhook_url", sa.Text),
        sa.Column(
            "cancel_requested", sa.Boolean, nullable=False, server_default="false"
        ),
        sa.Column("idempotency_key", sa.Text),
        sa.Column("duration_seconds", sa.Double),
        sa.Column("updated_at", _TS, nullable=False, server_default=sa.func.now()),
        sa.CheckConstraint(
            "status IN ('pending', 'running', 'completed', 'failed', 'cancelled')",
            name="jobs_status_check",
        ),
        sa.CheckConstraint(
            "priority IN ('high', 'normal', 'low')", name="jobs_priority_check"
        ),
        schema=schema,
    )
    op.create_index(
        "jobs_tenant_listing_idx",
        "jobs",
        ["tenant_id", sa.text("created_at DESC"), sa.text("id DESC")],
        schema=schema,
    )
    op.create_index(
        "jobs_queue_idx",
        "jobs",
        ["status", "priority_rank", "created_at"],
        schema=schema,
    )
    op.create_index("jobs_sweep_idx", "jobs", ["status", "deadline"], schema=schema)

    op.create_table(
        "job_events",
        sa.Column("id", sa.Uuid, primary_key=True),
        sa.Column(
            "job_id",
            sa.Uuid,
            sa.ForeignKey(f"{schema}.jobs.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("type", sa.Text, nullable=False),
        sa.Column("time", _TS, nullable=False),
        sa.Column("payload", JSONB, nullable=False),
        schema=schema,
    )
    op.create_index(
        "job_events_job_idx", "job_events", ["job_id", "time"], schema=schema
    )

    op.create_table(
        "outbox",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("topic", sa.Text, nullable=False),
        sa.Column("key", sa.Text, nullable=False),
        sa.Column("payload", sa.LargeBinary, nullable=False),
        sa.Column("headers", JSONB, nullable=False, server_default="{}"),
        sa.Column("created_at", _TS, nullable=False, server_default=sa.func.now()),
        schema=schema,
    )

    op.create_table(
        "idempotency_keys",
        sa.Column("tenant_id", sa.Text, primary_key=True),
        sa.Column("key", sa.Text, primary_key=True),
        sa.Column("request_hash", sa.Text, nullable=False),
        sa.Column(
            "job_id",
            sa.Uuid,
            sa.ForeignKey(f"{schema}.jobs.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("created_at", _TS, nullable=False),
        schema=schema,
    )
    op.create_index(
        "idempotency_keys_created_idx",
        "idempotency_keys",
        ["created_at"],
        schema=schema,
    )

    op.create_table(
        "node_catalog",
        sa.Column("worker_id", sa.Text, primary_key=True),
        sa.Column("catalog_hash", sa.Text, nullable=False),
        sa.Column("object_info", JSONB, nullable=False),
        sa.Column("updated_at", _TS, nullable=False),
        schema=schema,
    )

    op.create_table(
        "workers",
        sa.Column("worker_id", sa.Text, primary_key=True),
        sa.Column("last_heartbeat", _TS, nullable=False),
        sa.Column("current_job_id", sa.Text),
        sa.Column("info", JSONB, nullable=False, server_default="{}"),
        schema=schema,
    )


def downgrade(schema: str) -> None:
    for table in (
        "workers",
        "node_catalog",
        "idempotency_keys",
        "outbox",
        "job_events",
        "jobs",
    ):
        op.drop_table(table, schema=schema)
