"""Settings of the storage service, read from `STORAGE_*` environment variables."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from comfyserve.contracts.topics import FINISHED
from comfyserve.runtime.database import PostgresUrl, SchemaName
from comfyserve.runtime.identity import CheckedServerSettings

MIB = 1024 * 1024
# Presigned GET URLs never live longer than this, whatever a caller asks for.
MAX_DOWNLOAD_URL_TTL_SECONDS = 3600

DEFAULT_CONTENT_TYPES = frozenset(
    {
        "image/png",
        "image/jpeg",
        "image/webp",
        "image/gif",
        "video/mp4",
        "video/webm",
        "audio/wav",
        "audio/mpeg",
        "audio/flac",
        "audio/ogg",
        "application/octet-stream",
        "text/plain",
        "application/json",
    }
)


class Settings(CheckedServerSettings):
    model_config = SettingsConfigDict(env_prefix="STORAGE_", validate_by_name=True)

    database_url: PostgresUrl
    schema_name: SchemaName = Field(default="storage", alias="STORAGE_SCHEMA")
    grpc_port: int = Field(default=50052, ge=0, le=65535)
    metrics_port: int = Field(default=9103, ge=0, le=65535)

    s3_endpoint: str
    s3_access_key: str
    s3_secret_key: SecretStr
    s3_bucket: str
    s3_secure: bool = False
    s3_region: str = "us-east-1"
    # Host clients use to reach S3 when it differs from ours (presigned URLs are
    # signed for the host they are used with); unset means `s3_endpoint`.
    s3_public_endpoint: str | None = None

    upload_url_ttl_seconds: int = Field(default=300, ge=1, le=7 * 24 * 3600)
    download_url_ttl_seconds: int = Field(
        default=300, ge=1, le=MAX_DOWNLOAD_URL_TTL_SECONDS
    )
    max_upload_bytes: int = Field(default=50 * MIB, ge=1)
    allowed_content_types: Annotated[frozenset[str], NoDecode] = DEFAULT_CONTENT_TYPES
    input_ttl_seconds: int = Field(default=24 * 3600, ge=1)
    output_ttl_seconds: int = Field(default=7 * 24 * 3600, ge=1)
    retention_interval_seconds: float = Field(default=60, gt=0)

    kafka_bootstrap_servers: str = "127.0.0.1:19092"
    consumer_group: str = Field(default="storage", min_length=1)
    # Where a group with no committed offset starts: `earliest`, so that a
    # missed end does not leave a losing attempt's outputs in place. Restarts
    # resume from the committed offset either way; `latest` is for throw-away
    # groups on a shared broker (the benchmarks), which would otherwise fence
    # every job still in the topic first.
    first_start_offset: Literal["earliest", "latest"] = "earliest"
    # The topic of job ends; only tests point it elsewhere.
    finished_topic: str = Field(default=FINISHED, min_length=1)

    @field_validator("allowed_content_types", mode="before")
    @classmethod
    def _split_content_types(cls, value: object) -> object:
        if isinstance(value, str):
            return frozenset(
                item.strip().lower() for item in value.split(",") if item.strip()
            )
        return value

    @property
    def presign_endpoint(self) -> str:
        return self.s3_public_endpoint or self.s3_endpoint
