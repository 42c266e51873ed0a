"""Finished deliveries (succeeded or dead) by the time they finished, for the
retention sweep that forgets them, oldest first, once the delivery log has kept
them `NOTIFIER_DELIVERY_RETENTION_DAYS`. Partial: pending deliveries are never
forgotten, and the index stays the size of what retention may remove.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade(schema: str) -> None:
    op.execute(
        "CREATE INDEX deliveries_finished ON deliveries (updated_at) "
        "WHERE status <> 'pending'"
    )


def downgrade(schema: str) -> None:
    op.execute(f'DROP INDEX "{schema}".deliveries_finished')
