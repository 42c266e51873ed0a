"""Configuration, read from `WORKFLOW_*` environment variables."""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from comfyserve.contracts.topics import SUBMIT_REQUESTED
from comfyserve.runtime.database import SchemaName, asyncpg_dsn
from comfyserve.runtime.identity import CheckedServerSettings
from comfyserve.runtime.settings import comma_separated


class Settings(CheckedServerSettings):
    model_config = SettingsConfigDict(env_prefix="WORKFLOW_")

    database_url: str = "postgresql://comfyserve:comfyserve@127.0.0.1:15432/comfyserve"
    schema_: SchemaName = Field(default="workflow", alias="WORKFLOW_SCHEMA")
    kafka_bootstrap_servers: str = "127.0.0.1:19092"
    grpc_port: int = Field(default=50051, ge=0, le=65535)
    metrics_port: int = Field(default=9102, ge=0, le=65535)
    storage_grpc_target: str = "127.0.0.1:50052"
    storage_timeout_seconds: float = Field(default=5.0, gt=0)
    default_timeout_seconds: int = Field(default=600, gt=0)
    max_timeout_seconds: int = Field(default=3600, gt=0)
    # Added to a job's timeout to form its deadline: the time a job may wait
    # in the queue (over all its attempts) before the sweeper fails it.
    queue_timeout_seconds: int = Field(default=3600, ge=0)
    max_attempts: int = Field(default=3, ge=1)
    # An attempt whose worker has not renewed its lease for this long is
    # re-queued (or failed once out of attempts); workers renew a third of it.
    lease_seconds: float = Field(default=15.0, gt=0)
    # The longest AcquireJob waits for a job before answering without one.
    acquire_max_wait_seconds: float = Field(default=30.0, gt=0)
    # A pool whose workers were heard from this recently is preferred when
    # several pools' catalogs validate a graph.
    worker_timeout_seconds: float = Field(default=30.0, gt=0)
    # A pool (its catalog) and worker records nobody heard from for this long
    # are forgotten; until then a pool scaled to zero still validates jobs.
    pool_ttl_hours: float = Field(default=168.0, gt=0)
    # Development only: let webhook URLs reach loopback (a receiver on this
    # machine); other private addresses stay refused.
    webhook_allow_loopback: bool = False
    sweep_interval_seconds: float = Field(default=2.0, gt=0)
    deadline_grace_seconds: float = Field(default=10.0, ge=0)
    idempotency_ttl_hours: float = Field(default=24.0, gt=0)
    # A finished job, its event log and idempotency keys are forgotten this
    # long after it ended; pending and running jobs never are.
    job_retention_days: float = Field(default=30.0, gt=0)
    # Holds jobs' partner-node keys until they end (ADR 0006). A submit with
    # a key and every claim wait on it, so a call gives up quickly.
    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_timeout_seconds: float = Field(default=1.0, gt=0)

    consumer_group: str = "workflow"
    # Where a consumer group without committed offsets starts; `earliest` so a
    # first deployment picks up the compacted node catalog.
    consumer_offset_reset: Literal["earliest", "latest"] = "earliest"
    # Where internal teams produce submit-requested commands; consumed by
    # the group `<consumer_group>.ingress`.
    ingress_topic: str = Field(default=SUBMIT_REQUESTED, min_length=1)
    outbox_poll_seconds: float = Field(default=1.0, gt=0)
    outbox_batch_size: int = Field(default=200, gt=0)

    # Each tenant's limits unless its own are set (SetTenantQuota): jobs
    # running at once (more wait in the queue) and jobs queued (a submit over
    # it is refused with queue_full).
    tenant_max_running: int = Field(default=32, ge=1)
    tenant_max_queued: int = Field(default=1000, ge=1)
    queue_full_retry_after_seconds: float = Field(default=5.0, gt=0)

    # Comma-separated class types this deployment runs; unset allows every
    # class an executor publishes.
    node_allowlist: str | None = None
    # Comma-separated executor pools this deployment accepts catalogs from;
    # unset accepts every pool that publishes one.
    pools: str | None = None

    @property
    def allowlist(self) -> frozenset[str] | None:
        return comma_separated(self.node_allowlist)

    @property
    def pool_allowlist(self) -> frozenset[str] | None:
        return comma_separated(self.pools)

    @property
    def ingress_consumer_group(self) -> str:
        return f"{self.consumer_group}.ingress"

    @property
    def asyncpg_dsn(self) -> str:
        return asyncpg_dsn(self.database_url)
