"""Every change to an endpoint row notifies `<schema>_endpoints` with the
endpoint's tenant, when its transaction commits: each notifier instance keeps
the tenants' enabled endpoints in memory and drops a tenant's on the word. A
trigger, so that no write path (the API's, or the worker disabling an endpoint
that is gone) can forget to say so.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade(schema: str) -> None:
    op.execute(
        """
        CREATE FUNCTION endpoint_changed() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify(
                TG_TABLE_SCHEMA || '_endpoints',
                CASE TG_OP WHEN 'DELETE' THEN OLD.tenant_id ELSE NEW.tenant_id END
            );
            RETURN NULL;
        END
        $$
        """
    )
    op.execute(
        "CREATE TRIGGER endpoint_changed AFTER INSERT OR UPDATE OR DELETE "
        "ON endpoints FOR EACH ROW EXECUTE FUNCTION endpoint_changed()"
    )


def downgrade(schema: str) -> None:
    op.execute(f'DROP TRIGGER endpoint_changed ON "{schema}".endpoints')
    op.execute(f'DROP FUNCTION "{schema}".endpoint_changed()')
