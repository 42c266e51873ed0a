"""Outputs fenced by attempt; deletions claimed before their objects go.

- `files.attempt`: the job attempt that wrote an output. The output slot is unique
  per (job, attempt, node, index), so a losing attempt never overwrites the
  winner's row or object. Outputs stored before this revision count as attempt 1.
- `job_fences`: one row per ended job with the attempt that owns its outputs;
  `swept_at` is set once late uploads under the job's prefix were removed.
- State `deleting` with `deleting_since`: a row whose object is being deleted.
  The claim commits before the object store is called, so no transaction or row
  lock spans an S3 call; a row left `deleting` is retried later.
- Partial indexes, so each part of the retention query has one.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_OUTPUT_SLOT = (
    "purpose <> 'output' OR (job_id IS NOT NULL AND node_id IS NOT NULL "
    'AND "index" IS NOT NULL{attempt})'
)


def upgrade(schema: str) -> None:
    files = f'"{schema}".files'
    op.add_column("files", sa.Column("attempt", sa.Integer()), schema=schema)
    op.add_column(
        "files",
        sa.Column("deleting_since", sa.DateTime(timezone=True)),
        schema=schema,
    )
    op.execute(f"UPDATE {files} SET attempt = 1 WHERE purpose = 'output'")

    op.drop_constraint("files_output_slot", "files", schema=schema)
    op.create_check_constraint(
        "files_output_slot",
        "files",
        _OUTPUT_SLOT.format(attempt=" AND attempt IS NOT NULL"),
        schema=schema,
    )
    op.create_check_constraint(
        "files_attempt", "files", "attempt IS NULL OR attempt >= 1", schema=schema
    )
    op.drop_constraint("files_state", "files", schema=schema)
    op.create_check_constraint(
        "files_state",
        "files",
        "state IN ('pending', 'ready', 'deleting')",
        schema=schema,
    )
    op.create_check_constraint(
        "files_deleting_since",
        "files",
        "(state = 'deleting') = (deleting_since IS NOT NULL)",
        schema=schema,
    )

    op.drop_index("files_output_slot_key", "files", schema=schema)
    # Also serves the per-job lookups of fencing (job_id is its first column).
    op.create_index(
        "files_output_slot_key",
        "files",
        ["job_id", "attempt", "node_id", "index"],
        unique=True,
        schema=schema,
        postgresql_where=sa.text("purpose = 'output'"),
    )
    op.create_index(
        "files_pending_created_at",
        "files",
        ["created_at"],
        schema=schema,
        postgresql_where=sa.text("state = 'pending'"),
    )
    op.create_index(
        "files_deleting_since",
        "files",
        ["deleting_since"],
        schema=schema,
        postgresql_where=sa.text("state = 'deleting'"),
    )

    op.create_table(
        "job_fences",
        sa.Column("job_id", sa.String(128), primary_key=True),
        sa.Column("tenant_id", sa.String(128), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("swept_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("attempt >= 0", name="job_fences_attempt"),
        schema=schema,
    )
    op.create_index(
        "job_fences_unswept",
        "job_fences",
        ["ended_at"],
        schema=schema,
        postgresql_where=sa.text("swept_at IS NULL"),
    )


def downgrade(schema: str) -> None:
    """Back to one output row per (job, node, index): only the newest attempt's
    row of each slot survives, and rows being deleted go at once (their objects
    are left to the store)."""
    files = f'"{schema}".files'
    op.drop_table("job_fences", schema=schema)
    op.execute(f"DELETE FROM {files} WHERE state = 'deleting'")
    op.execute(
        f"DELETE FROM {files} AS older USING {files} AS newer "
        "WHERE older.purpose = 'output' AND newer.purpose = 'output' "
        "AND older.job_id = newer.job_id AND older.node_id = newer.node_id "
        'AND older."index" = newer."index" AND older.attempt < newer.attempt'
    )
    op.drop_index("files_deleting_since", "files", schema=schema)
    op.drop_index("files_pending_created_at", "files", schema=schema)
    op.drop_index("files_output_slot_key", "files", schema=schema)
    op.create_index(
        "files_output_slot_key",
        "files",
        ["job_id", "node_id", "index"],
        unique=True,
        schema=schema,
        postgresql_where=sa.text("purpose = 'output'"),
    )
    op.drop_constraint("files_deleting_since", "files", schema=schema)
    op.drop_constraint("files_state", "files", schema=schema)
    op.create_check_constraint(
        "files_state", "files", "state IN ('pending', 'ready')", schema=schema
    )
    op.drop_constraint("files_attempt", "files", schema=schema)
    op.drop_constraint("files_output_slot", "files", schema=schema)
    op.create_check_constraint(
        "files_output_slot", "files", _OUTPUT_SLOT.format(attempt=""), schema=schema
    )
    op.drop_column("files", "deleting_since", schema=schema)
    op.drop_column("files", "attempt", schema=schema)
