"""What the executors tell us about themselves: heartbeats and, per pool, the
node catalog."""

from __future__ import annotations

from sqlalchemy import Column, DateTime, Table, Text
from sqlalchemy.dialects.postgresql import JSONB

from comfyserve.workflow.db import metadata

workers = Table(
    "workers",
    metadata,
    Column("worker_id", Text, primary_key=True),
    Column("pool", Text, nullable=False),
    Column("last_heartbeat", DateTime(timezone=True), nullable=False),
    Column("current_job_id", Text),
    Column("info", JSONB, nullable=False),
)

pool_catalogs = Table(
    "pool_catalogs",
    metadata,
    Column("pool", Text, primary_key=True),
    Column("catalog_hash", Text, nullable=False),
    Column("object_info", JSONB, nullable=False),
    Column("worker_id", Text, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)
