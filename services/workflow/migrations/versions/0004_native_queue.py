"""The native ComfyUI API's view of jobs: a queue number and a client id.

- `number` orders jobs by acceptance, across tenants, as ComfyUI's queue
  `number` does; a sequence hands it out (gaps after a rolled-back submit are
  harmless: ComfyUI's counter has them too);
- `client_id` is the native WebSocket session a job was submitted for;
- an index serves a tenant's listing in acceptance order (`/queue`,
  `/history`).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade(schema: str) -> None:
    sequence = f'"{schema}".jobs_number_seq'
    op.execute(f"CREATE SEQUENCE {sequence}")
    op.add_column(
        "jobs",
        sa.Column(
            "number",
            sa.BigInteger,
            nullable=False,
            server_default=sa.text(f"nextval('{sequence}')"),
        ),
        schema=schema,
    )
    op.execute(f'ALTER SEQUENCE {sequence} OWNED BY "{schema}".jobs.number')
    op.add_column("jobs", sa.Column("client_id", sa.Text), schema=schema)
    op.create_index(
        "jobs_tenant_number_idx", "jobs", ["tenant_id", "number"], schema=schema
    )


def downgrade(schema: str) -> None:
    op.drop_index("jobs_tenant_number_idx", table_name="jobs", schema=schema)
    op.drop_column("jobs", "client_id", schema=schema)
    # Dropping the column drops the sequence it owns.
    op.drop_column("jobs", "number", schema=schema)
