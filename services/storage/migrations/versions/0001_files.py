"""Files: one row per stored object, with its owner, job and expiry.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade(schema: str) -> None:
    op.create_table(
        "files",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("tenant_id", sa.String(128), nullable=False),
        sa.Column("purpose", sa.String(16), nullable=False),
        sa.Column("filename", sa.String(255), nullable=False),
        sa.Column("content_type", sa.String(255), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=True),
        sa.Column("bucket", sa.String(255), nullable=False),
        sa.Column("key", sa.String(1024), nullable=False),
        sa.Column("job_id", sa.String(128), nullable=True),
        sa.Column("node_id", sa.String(128), nullable=True),
        sa.Column("index", sa.Integer(), nullable=True),
        sa.Column("width", sa.Integer(), nullable=True),
        sa.Column("height", sa.Integer(), nullable=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("purpose IN ('input', 'output')", name="files_purpose"),
        sa.CheckConstraint("state IN ('pending', 'ready')", name="files_state"),
        sa.CheckConstraint("size >= 0", name="files_size"),
        sa.CheckConstraint(
            "purpose <> 'output' OR "
            '(job_id IS NOT NULL AND node_id IS NOT NULL AND "index" IS NOT NULL)',
            name="files_output_slot",
        ),
        schema=schema,
    )
    # A re-run writes the same output slot again instead of adding a row.
    op.create_index(
        "files_output_slot_key",
        "files",
        ["job_id", "node_id", "index"],
        unique=True,
        schema=schema,
        postgresql_where=sa.text("purpose = 'output'"),
    )
    op.create_index(
        "files_tenant_listing",
        "files",
        ["tenant_id", sa.text("created_at DESC"), sa.text("id DESC")],
        schema=schema,
    )
    op.create_index("files_expires_at", "files", ["expires_at"], schema=schema)


def downgrade(schema: str) -> None:
    op.drop_table("files", schema=schema)
