"""Settings of the gateway, read from `GATEWAY_*` environment variables."""

from __future__ import annotations

from typing import Annotated

from pydantic import AnyHttpUrl, Field, SecretStr, field_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from comfyserve.contracts.limits import GRPC_MAX_MESSAGE_BYTES, MAX_WORKFLOW_BYTES
from comfyserve.runtime.identity import AuthClientSettings

MIB = 1024 * 1024
# Room in a JSON body for what travels around the graph: metadata, priority,
# webhook URL, timeout.
ENVELOPE_BYTES = 64 * 1024
DEFAULT_MAX_BODY_BYTES = MAX_WORKFLOW_BYTES + ENVELOPE_BYTES
# Room in an upload's body for the multipart framing and the small form fields
# around the file.
MULTIPART_OVERHEAD_BYTES = 64 * 1024


def _split_commas(value: object) -> object:
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


class Settings(AuthClientSettings):
    """`GATEWAY_*`; the auth service's address, issuer, audience and this
    gateway's own service key come from `AuthClientSettings`."""

    model_config = SettingsConfigDict(env_prefix="GATEWAY_")

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    # Prometheus on a port of its own, as every service has: never on the
    # public listener, where it would tell anyone the traffic of every route.
    metrics_port: int = Field(default=9101, ge=0, le=65535)
    # Bootstrap keys: each is a tenant of its own with every scope, checked
    # here without the auth service, so deployments that predate it keep
    # working.
    api_keys: Annotated[list[SecretStr], NoDecode] = Field(default_factory=list)
    workflow_grpc_target: str = "127.0.0.1:50051"
    storage_grpc_target: str = "127.0.0.1:50052"
    notifier_grpc_target: str = "127.0.0.1:50054"
    redis_url: str = "redis://127.0.0.1:6379/0"
    # Every request waits on Redis (rate limits, suspensions): a stalled one
    # must fail fast, so writes are refused and reads served at once.
    redis_timeout_seconds: float = Field(default=0.5, gt=0)
    # A body within the limit always fits one gRPC message, so the gateway's
    # 413 is the only refusal a large request can get for its size.
    max_body_bytes: int = Field(
        default=DEFAULT_MAX_BODY_BYTES,
        ge=1,
        le=GRPC_MAX_MESSAGE_BYTES - ENVELOPE_BYTES,
    )
    max_upload_bytes: int = Field(default=50 * MIB, ge=1)
    # The request line and headers together; a larger head is refused while
    # it is read, so a client cannot make the gateway buffer megabytes.
    max_header_bytes: int = Field(default=64 * 1024, ge=1024)
    sse_keepalive_seconds: float = Field(default=10, gt=0)
    # Comfy API v2: open event streams per gateway process, 8 as the reference
    # proxy (beyond it, 429 `too_many_streams`; clients fall back to polling),
    # and how long after its creation a job's outputs are promised
    # (`expires_at`): the storage service's output lifetime.
    v2_max_streams: int = Field(default=8, ge=1)
    v2_retention_hours: float = Field(default=168, gt=0)
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # Base of the absolute links in responses when the gateway sits behind a
    # proxy that rewrites the host; unset uses the request's own URL.
    public_base_url: AnyHttpUrl | None = None
    grpc_timeout_seconds: float = Field(default=10, gt=0)
    readiness_timeout_seconds: float = Field(default=2, gt=0)
    shutdown_grace_seconds: float = Field(default=20, ge=0)
    # Addresses whose X-Forwarded-* headers uvicorn trusts.
    forwarded_allow_ips: str = "127.0.0.1"

    # GCRA per principal (per client address for the auth routes) and route
    # class: a steady rate, and how many requests may come at once.
    rate_submit_per_minute: int = Field(default=120, ge=1)
    rate_submit_burst: int = Field(default=30, ge=1)
    rate_read_per_minute: int = Field(default=1200, ge=1)
    rate_read_burst: int = Field(default=200, ge=1)
    rate_upload_per_minute: int = Field(default=120, ge=1)
    rate_upload_burst: int = Field(default=30, ge=1)
    rate_manage_per_minute: int = Field(default=60, ge=1)
    rate_manage_burst: int = Field(default=20, ge=1)
    rate_auth_per_minute: int = Field(default=30, ge=1)
    rate_auth_burst: int = Field(default=10, ge=1)

    @field_validator("api_keys", "cors_origins", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        return _split_commas(value)

    @field_validator("api_keys")
    @classmethod
    def _no_empty_keys(cls, value: list[SecretStr]) -> list[SecretStr]:
        if any(not key.get_secret_value() for key in value):
            raise ValueError("API keys must not be empty")
        return value

    @field_validator("cors_origins")
    @classmethod
    def _explicit_origins(cls, value: list[str]) -> list[str]:
        # A wildcard would let any page call the API with a user's token.
        if "*" in value:
            raise ValueError("CORS origins must be listed explicitly, not '*'")
        return value
