"""The trace a job belongs to.

- `trace_id` names the trace its submit began (`GET /workflows/{id}` shows it);
- `traceparent` is the submit's W3C trace context, so an event the service
  publishes later for the job with no request of its own behind it (a
  re-queue by the sweeper, an expiry) continues that trace.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade(schema: str) -> None:
    op.add_column("jobs", sa.Column("trace_id", sa.Text), schema=schema)
    op.add_column("jobs", sa.Column("traceparent", sa.Text), schema=schema)


def downgrade(schema: str) -> None:
    op.drop_column("jobs", "traceparent", schema=schema)
    op.drop_column("jobs", "trace_id", schema=schema)
