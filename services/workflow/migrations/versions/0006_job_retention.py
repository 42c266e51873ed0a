"""Finished jobs by the time they ended, for the sweep that forgets them (with
their event log and idempotency keys, by cascade) once the history has kept
them `WORKFLOW_JOB_RETENTION_DAYS`. Partial: pending and running jobs are never
forgotten, and the index holds only what retention may remove.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade(schema: str) -> None:
    op.execute(
        f'CREATE INDEX jobs_finished_idx ON "{schema}".jobs (completed_at) '
        "WHERE status IN ('completed', 'failed', 'cancelled')"
    )


def downgrade(schema: str) -> None:
    op.execute(f'DROP INDEX "{schema}".jobs_finished_idx')
