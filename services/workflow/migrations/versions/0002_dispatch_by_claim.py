"""Dispatch by claim: pools, leases, queue depth, the dead outbox.

- jobs gain their pool, a lease (attempts are fenced by it) and the node inputs
  that name files; a partial index serves claims and queue positions;
- node catalogs are kept per pool instead of per worker, and workers name
  their pool;
- queue_depth counts pending jobs per pool and priority (sharded, so submits and
  claims do not queue on one row);
- outbox_dead keeps the rows the relay could never send.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_TS = sa.DateTime(timezone=True)


def upgrade(schema: str) -> None:
    op.add_column(
        "jobs",
        sa.Column("pool", sa.Text, nullable=False, server_default="default"),
        schema=schema,
    )
    op.add_column("jobs", sa.Column("lease_expires_at", _TS), schema=schema)
    op.add_column(
        "jobs",
        sa.Column("file_inputs", JSONB, nullable=False, server_default="[]"),
        schema=schema,
    )
    op.drop_index("jobs_queue_idx", table_name="jobs", schema=schema)
    # Claims take the first row; queue positions count a range of it.
    op.create_index(
        "jobs_dispatch_idx",
        "jobs",
        ["pool", "priority_rank", "created_at", "id"],
        schema=schema,
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.create_index(
        "jobs_lease_idx",
        "jobs",
        ["lease_expires_at"],
        schema=schema,
        postgresql_where=sa.text("status = 'running'"),
    )

    op.drop_table("node_catalog", schema=schema)
    op.create_table(
        "pool_catalogs",
        sa.Column("pool", sa.Text, primary_key=True),
        sa.Column("catalog_hash", sa.Text, nullable=False),
        sa.Column("object_info", JSONB, nullable=False),
        sa.Column("worker_id", sa.Text, nullable=False),
        sa.Column("updated_at", _TS, nullable=False),
        schema=schema,
    )
    op.add_column(
        "workers",
        sa.Column("pool", sa.Text, nullable=False, server_default="default"),
        schema=schema,
    )
    op.create_index(
        "workers_pool_idx", "workers", ["pool", "last_heartbeat"], schema=schema
    )

    op.create_table(
        "queue_depth",
        sa.Column("pool", sa.Text, primary_key=True),
        sa.Column("priority_rank", sa.SmallInteger, primary_key=True),
        sa.Column("shard", sa.SmallInteger, primary_key=True),
        sa.Column("pending", sa.BigInteger, nullable=False),
        schema=schema,
    )
    op.execute(
        f"""
        INSERT INTO "{schema}".queue_depth (pool, priority_rank, shard, pending)
        SELECT pool, priority_rank, 0, count(*) FROM "{schema}".jobs
        WHERE status = 'pending' GROUP BY pool, priority_rank
        """
    )

    op.create_table(
        "outbox_dead",
        sa.Column("id", sa.BigInteger, primary_key=True),
        sa.Column("topic", sa.Text, nullable=False),
        sa.Column("key", sa.Text, nullable=False),
        sa.Column("payload", sa.LargeBinary, nullable=False),
        sa.Column("headers", JSONB, nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("failed_at", _TS, nullable=False),
        sa.Column("error", sa.Text, nullable=False),
        schema=schema,
    )


def downgrade(schema: str) -> None:
    op.drop_table("outbox_dead", schema=schema)
    op.drop_table("queue_depth", schema=schema)
    op.drop_index("workers_pool_idx", table_name="workers", schema=schema)
    op.drop_column("workers", "pool", schema=schema)
    op.drop_table("pool_catalogs", schema=schema)
    op.create_table(
        "node_catalog",
        sa.Column("worker_id", sa.Text, primary_key=True),
        sa.Column("catalog_hash", sa.Text, nullable=False),
        sa.Column("object_info", JSONB, nullable=False),
        sa.Column("updated_at", _TS, nullable=False),
        schema=schema,
    )
    op.drop_index("jobs_lease_idx", table_name="jobs", schema=schema)
    op.drop_index("jobs_dispatch_idx", table_name="jobs", schema=schema)
    op.create_index(
        "jobs_queue_idx",
        "jobs",
        ["status", "priority_rank", "created_at"],
        schema=schema,
    )
    for column in ("file_inputs", "lease_expires_at", "pool"):
        op.drop_column("jobs", column, schema=schema)
