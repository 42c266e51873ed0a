"""Webhook endpoints, tenant signing secrets, deliveries and their attempts.

- `signing_secrets`: one row per tenant, the secret of its jobs' own
  `webhook_url` deliveries; `previous_secret` keeps signing until
  `previous_expires_at` after a rotation.
- `endpoints`: a tenant's registered receivers, each with its own secret (and
  the same rotation overlap), event filter and enabled flag.
- `deliveries`: one row per event and target, recorded before any attempt;
  its id is the `webhook-id`. `target_key` (the endpoint id, or the URL of a
  job's own webhook) makes a redelivered event record nothing new, and is
  what the per-endpoint concurrency limit counts. A claim sets
  `claimed_until`; due work is `pending` with `next_attempt_at` passed.
- `delivery_attempts`: what each attempt got back.
- `deliveries_changed` is NOTIFY'd when work becomes due now, so the delivery
  loop wakes without polling.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade(schema: str) -> None:
    op.execute(
        """
        CREATE TABLE signing_secrets (
            tenant_id text PRIMARY KEY,
            secret text NOT NULL,
            previous_secret text,
            previous_expires_at timestamptz,
            created_at timestamptz NOT NULL DEFAULT now()
        )
        """
    )
    op.execute(
        """
        CREATE TABLE endpoints (
            id uuid PRIMARY KEY,
            tenant_id text NOT NULL,
            url text NOT NULL,
            event_types text[] NOT NULL DEFAULT '{}',
            description text NOT NULL DEFAULT '',
            enabled boolean NOT NULL DEFAULT true,
            disabled_reason text NOT NULL DEFAULT '',
            secret text NOT NULL,
            previous_secret text,
            previous_expires_at timestamptz,
            created_at timestamptz NOT NULL DEFAULT now(),
            updated_at timestamptz NOT NULL DEFAULT now()
        )
        """
    )
    op.execute("CREATE INDEX endpoints_by_tenant ON endpoints (tenant_id, id)")
    op.execute(
        """
        CREATE TABLE deliveries (
            id text PRIMARY KEY,
            tenant_id text NOT NULL,
            job_id text NOT NULL DEFAULT '',
            event_id uuid NOT NULL,
            event_type text NOT NULL,
            event_time timestamptz NOT NULL,
            endpoint_id uuid REFERENCES endpoints (id) ON DELETE SET NULL,
            target_key text NOT NULL,
            url text NOT NULL,
            payload jsonb NOT NULL,
            status text NOT NULL DEFAULT 'pending'
                CONSTRAINT deliveries_status
                CHECK (status IN ('pending', 'succeeded', 'dead')),
            dead_reason text NOT NULL DEFAULT '',
            attempt_count integer NOT NULL DEFAULT 0,
            failures integer NOT NULL DEFAULT 0,
            next_attempt_at timestamptz,
            claimed_until timestamptz,
            claim uuid,
            created_at timestamptz NOT NULL DEFAULT now(),
            updated_at timestamptz NOT NULL DEFAULT now(),
            CONSTRAINT deliveries_once_per_target UNIQUE (event_id, target_key)
        )
        """
    )
    op.execute(
        "CREATE INDEX deliveries_due ON deliveries (next_attempt_at) "
        "WHERE status = 'pending'"
    )
    op.execute(
        "CREATE INDEX deliveries_in_flight ON deliveries (target_key) "
        "WHERE claimed_until IS NOT NULL"
    )
    op.execute(
        "CREATE INDEX deliveries_by_tenant ON deliveries (tenant_id, created_at, id)"
    )
    op.execute("CREATE INDEX deliveries_by_job ON deliveries (tenant_id, job_id)")
    op.execute(
        """
        CREATE TABLE delivery_attempts (
            delivery_id text NOT NULL REFERENCES deliveries (id) ON DELETE CASCADE,
            number integer NOT NULL,
            started_at timestamptz NOT NULL,
            status_code integer,
            latency_ms bigint NOT NULL,
            response_excerpt text NOT NULL DEFAULT '',
            error text NOT NULL DEFAULT '',
            PRIMARY KEY (delivery_id, number)
        )
        """
    )


def downgrade(schema: str) -> None:
    for table in ("delivery_attempts", "deliveries", "endpoints", "signing_secrets"):
        op.execute(f'DROP TABLE "{schema}".{table}')
