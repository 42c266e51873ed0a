"""Tenants, users, login throttling, signing keys, refresh tokens and API keys.

Revision ID: 0001
Revises:
Create Date: 2026-01-12
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import ARRAY

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_TS = sa.DateTime(timezone=True)


def upgrade(schema: str) -> None:
    op.create_table(
        "tenants",
        sa.Column("id", sa.Uuid, primary_key=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("suspended", sa.Boolean, nullable=False, server_default="false"),
        sa.Column("created_at", _TS, nullable=False),
        schema=schema,
    )
    # ListTenants pages in this order.
    op.create_index(
        "tenants_listing_idx", "tenants", ["created_at", "id"], schema=schema
    )

    op.create_table(
        "users",
        sa.Column("id", sa.Uuid, primary_key=True),
        sa.Column(
            "tenant_id",
            sa.Uuid,
            sa.ForeignKey(f"{schema}.tenants.id", ondelete="CASCADE"),
            nullable=False,
        ),
        # Normalised (trimmed, lower-case) by the service before it gets here.
        sa.Column("email", sa.Text, nullable=False),
        sa.Column("password_hash", sa.Text, nullable=False),
        sa.Column("role", sa.Text, nullable=False),
        sa.Column("is_admin", sa.Boolean, nullable=False, server_default="false"),
        sa.Column("created_at", _TS, nullable=False),
        sa.UniqueConstraint("email", name="users_email_key"),
        sa.CheckConstraint("role IN ('owner', 'member')", name="users_role_check"),
        schema=schema,
    )
    op.create_index("users_tenant_idx", "users", ["tenant_id"], schema=schema)

    op.create_table(
        "login_throttle",
        # `account:<e-mail>` or `address:<ip>`; unknown e-mails count too.
        sa.Column("key", sa.Text, primary_key=True),
        sa.Column("window_started_at", _TS, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        schema=schema,
    )
    op.create_index(
        "login_throttle_window_idx",
        "login_throttle",
        ["window_started_at"],
        schema=schema,
    )

    op.create_table(
        "signing_keys",
        sa.Column("kid", sa.Text, primary_key=True),
        # Raw Ed25519 public key (32 bytes).
        sa.Column("public_key", sa.LargeBinary, nullable=False),
        # AES-GCM nonce and ciphertext of the raw private key, the kid bound
        # in as associated data.
        sa.Column("private_key", sa.LargeBinary, nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("retired_at", _TS),
        schema=schema,
    )

    op.create_table(
        "refresh_families",
        sa.Column("id", sa.Uuid, primary_key=True),
        sa.Column(
            "user_id",
            sa.Uuid,
            sa.ForeignKey(f"{schema}.users.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("scopes", ARRAY(sa.Text), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("revoked_at", _TS),
        schema=schema,
    )
    op.create_index(
        "refresh_families_user_idx", "refresh_families", ["user_id"], schema=schema
    )

    op.create_table(
        "refresh_tokens",
        sa.Column("id", sa.Uuid, primary_key=True),
        sa.Column(
            "family_id",
            sa.Uuid,
            sa.ForeignKey(f"{schema}.refresh_families.id", ondelete="CASCADE"),
            nullable=False,
        ),
        # SHA-256 of the token.
        sa.Column("token_hash", sa.LargeBinary, nullable=False),
        # Where the token was issued to (login or refresh), for an audit.
        sa.Column("client_address", sa.Text),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("expires_at", _TS, nullable=False),
        sa.Column("used_at", _TS),
        sa.UniqueConstraint("token_hash", name="refresh_tokens_hash_key"),
        schema=schema,
    )
    op.create_index(
        "refresh_tokens_family_idx", "refresh_tokens", ["family_id"], schema=schema
    )
    op.create_index(
        "refresh_tokens_expiry_idx", "refresh_tokens", ["expires_at"], schema=schema
    )

    op.create_table(
        "api_keys",
        sa.Column("id", sa.Uuid, primary_key=True),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column(
            "tenant_id",
            sa.Uuid,
            sa.ForeignKey(f"{schema}.tenants.id", ondelete="CASCADE"),
        ),
        sa.Column("service_name", sa.Text),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("prefix", sa.Text, nullable=False),
        # SHA-256 of the secret.
        sa.Column("secret_hash", sa.LargeBinary, nullable=False),
        sa.Column("scopes", ARRAY(sa.Text), nullable=False),
        sa.Column(
            "created_by",
            sa.Uuid,
            sa.ForeignKey(f"{schema}.users.id", ondelete="SET NULL"),
        ),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("expires_at", _TS),
        sa.Column("last_used_at", _TS),
        sa.Column("revoked_at", _TS),
        sa.Column("rate_per_minute", sa.Integer, nullable=False, server_default="0"),
        sa.Column("rate_burst", sa.Integer, nullable=False, server_default="0"),
        sa.UniqueConstraint("secret_hash", name="api_keys_secret_hash_key"),
        sa.UniqueConstraint("service_name", name="api_keys_service_name_key"),
        sa.CheckConstraint("kind IN ('tenant', 'service')", name="api_keys_kind_check"),
        # A tenant's key has a tenant; a service's key has a name and no tenant.
        sa.CheckConstraint(
            "(kind = 'tenant' AND tenant_id IS NOT NULL AND service_name IS NULL)"
            " OR (kind = 'service' AND tenant_id IS NULL"
            " AND service_name IS NOT NULL)",
            name="api_keys_owner_check",
        ),
        schema=schema,
    )
    op.create_index(
        "api_keys_tenant_idx",
        "api_keys",
        ["tenant_id", sa.text("created_at DESC")],
        schema=schema,
    )


def downgrade(schema: str) -> None:
    for table in (
        "api_keys",
        "refresh_tokens",
        "refresh_families",
        "signing_keys",
        "login_throttle",
        "users",
        "tenants",
    ):
        op.drop_table(table, schema=schema)
