"""Settings of the notifier service, read from `NOTIFIER_*` environment variables."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from comfyserve.contracts.topics import FINISHED, PROGRESS, STARTED
from comfyserve.runtime.database import PostgresUrl, SchemaName
from comfyserve.runtime.identity import CheckedServerSettings

# About 24 h in all: 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h.
DEFAULT_RETRY_SCHEDULE = (5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0)


class Settings(CheckedServerSettings):
    model_config = SettingsConfigDict(env_prefix="NOTIFIER_", validate_by_name=True)

    database_url: PostgresUrl
    schema_name: SchemaName = Field(default="notifier", alias="NOTIFIER_SCHEMA")
    grpc_port: int = Field(default=50054, ge=0, le=65535)
    metrics_port: int = Field(default=9106, ge=0, le=65535)

    kafka_bootstrap_servers: str = "127.0.0.1:19092"
    consumer_group: str = Field(default="notifier", min_length=1)
    # Where a group with no committed offset starts: `latest`, so a first
    # deployment does not send webhooks for every job still in the topics.
    # Restarts resume from the committed offset either way.
    first_start_offset: Literal["earliest", "latest"] = "latest"
    # The topics events come from; only tests point them elsewhere.
    finished_topic: str = Field(default=FINISHED, min_length=1)
    started_topic: str = Field(default=STARTED, min_length=1)
    progress_topic: str = Field(default=PROGRESS, min_length=1)
    dead_topic: str | None = Field(
        default=None, description="Where dead deliveries go; unset: the contracts'."
    )

    workflow_grpc_target: str = "127.0.0.1:50051"
    storage_grpc_target: str = "127.0.0.1:50052"
    # The gateway's public address, for the `links` of a job in a payload.
    public_base_url: str = "http://127.0.0.1:8000"

    # Seconds after the first failed attempt, then after each next one; the
    # delivery is dead when a retry after the last one would be needed.
    retry_schedule_seconds: Annotated[tuple[float, ...], NoDecode] = (
        DEFAULT_RETRY_SCHEDULE
    )
    # Each wait is stretched by a random share up to this, so receivers that
    # failed together are not retried together.
    retry_jitter: float = Field(default=0.2, ge=0, le=1)
    attempt_timeout_seconds: float = Field(default=15.0, gt=0)
    endpoint_concurrency: int = Field(default=4, ge=1)
    # Deliveries one instance sends at once, over every endpoint.
    max_in_flight: int = Field(default=64, ge=1)
    # The longest the delivery loop sleeps with no NOTIFY and nothing due.
    idle_poll_seconds: float = Field(default=5.0, gt=0)
    # The delivery log keeps a delivery this long after it succeeded or went
    # dead (replay works until then); pending ones are always kept.
    delivery_retention_days: float = Field(default=30.0, gt=0)
    retention_interval_seconds: float = Field(default=60.0, gt=0)
    # A previous secret keeps signing alongside the new one this long.
    secret_overlap_seconds: float = Field(default=24 * 3600, ge=0)
    # Loopback targets (receivers on this machine); development only.
    allow_private_targets: bool = False

    @field_validator("retry_schedule_seconds", mode="before")
    @classmethod
    def _split_schedule(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(float(item) for item in value.split(",") if item.strip())
        return value

    @field_validator("retry_schedule_seconds")
    @classmethod
    def _positive(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if any(delay <= 0 for delay in value):
            raise ValueError("every delay must be positive")
        return value

    @property
    def lease_seconds(self) -> float:
        """How long a claimed delivery is held before another instance may
        take it: an attempt's time with room for rendering its payload."""
        return self.attempt_timeout_seconds + 30.0
