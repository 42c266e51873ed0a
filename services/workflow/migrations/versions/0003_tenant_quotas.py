"""Tenant quotas: each tenant's own limits on running and queued jobs, and an
index that counts a tenant's pending and running jobs without reading its
history.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade(schema: str) -> None:
    op.create_table(
        "tenant_quotas",
        sa.Column("tenant_id", sa.Text, primary_key=True),
        # NULL: the deployment's default applies.
        sa.Column("max_running", sa.Integer),
        sa.Column("max_queued", sa.Integer),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("max_running > 0", name="tenant_quotas_running_check"),
        sa.CheckConstraint("max_queued > 0", name="tenant_quotas_queued_check"),
        schema=schema,
    )
    op.create_index(
        "jobs_tenant_active_idx",
        "jobs",
        ["tenant_id", "status"],
        schema=schema,
        postgresql_where=sa.text("status IN ('pending', 'running')"),
    )


def downgrade(schema: str) -> None:
    op.drop_index("jobs_tenant_active_idx", table_name="jobs", schema=schema)
    op.drop_table("tenant_quotas", schema=schema)
