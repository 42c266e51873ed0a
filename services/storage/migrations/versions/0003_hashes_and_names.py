"""BLAKE3 hashes and client names on files.

- `files.blake3`: `blake3:<hex>` of the content, for dedup lookups within a
  tenant; rows minted over another row's object share its key, and an object
  goes only with the last row naming it (the `key` index finds the others).
- `files.folder` and `files.path`: where a client file sits in the native
  ComfyUI namespace (`input` / `sub/photo.png`), so plain filenames in a
  workflow and native `/view` and `/upload/image` find the tenant's own file.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade(schema: str) -> None:
    op.add_column("files", sa.Column("blake3", sa.String(71)), schema=schema)
    op.add_column("files", sa.Column("folder", sa.String(16)), schema=schema)
    op.add_column("files", sa.Column("path", sa.String(1024)), schema=schema)
    # Inputs uploaded before names existed are named by their filename.
    op.execute(
        f"UPDATE \"{schema}\".files SET folder = 'input', path = filename "
        "WHERE purpose = 'input'"
    )
    op.create_check_constraint(
        "files_folder",
        "files",
        "folder IS NULL OR folder IN ('input', 'temp', 'output')",
        schema=schema,
    )
    op.create_index(
        "files_tenant_blake3",
        "files",
        ["tenant_id", "blake3", "created_at"],
        schema=schema,
        postgresql_where=sa.text("blake3 IS NOT NULL AND state = 'ready'"),
    )
    op.create_index(
        "files_tenant_path",
        "files",
        ["tenant_id", "folder", "path", "created_at"],
        schema=schema,
        postgresql_where=sa.text("path IS NOT NULL AND state = 'ready'"),
    )
    op.create_index("files_key", "files", ["key"], schema=schema)


def downgrade(schema: str) -> None:
    op.drop_index("files_key", "files", schema=schema)
    op.drop_index("files_tenant_path", "files", schema=schema)
    op.drop_index("files_tenant_blake3", "files", schema=schema)
    op.drop_constraint("files_folder", "files", schema=schema)
    op.drop_column("files", "path", schema=schema)
    op.drop_column("files", "folder", schema=schema)
    op.drop_column("files", "blake3", schema=schema)
