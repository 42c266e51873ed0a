"""The trace a delivery belongs to: `deliveries.traceparent`, the W3C
`traceparent` of the span that recorded it (the job event's consumer span, or
the request of a test delivery), so each attempt, however much later and in
whichever instance, joins the job's trace. Null for rows recorded before it,
and for events that carried no trace.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade(schema: str) -> None:
    op.execute("ALTER TABLE deliveries ADD COLUMN traceparent text")


def downgrade(schema: str) -> None:
    op.execute(f'ALTER TABLE "{schema}".deliveries DROP COLUMN traceparent')
