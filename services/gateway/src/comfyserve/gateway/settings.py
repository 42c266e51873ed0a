"""Settings of the gateway, read from `GATEWAY_*` environment variables."""

from __future__ import annotations

from typing import Annotated

from pydantic import AnyHttpUrl, Field, SecretStr, field_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from comfyserve.contracts.limits import GRPC_MAX_MESSAGE_BYTES, MAX_WORKFLOW_BYTES
from comfyserve.runtime.settings import ServiceSettings

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


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="GATEWAY_")

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    # Each key is a tenant of its own until the auth service issues principals.
    api_keys: Annotated[list[SecretStr], NoDecode] = Field(default_factory=list)
    workflow_grpc_target: str = "127.0.0.1:50051"
    storage_grpc_target: str = "127.0.0.1:50052"
    redis_url: str = "redis://127.0.0.1:6379/0"
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
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # Base of the absolute links in responses when the gateway sits behind a
    # proxy that rewrites the host; unset uses the request's own URL.
    public_base_url: AnyHttpUrl | None = None
    grpc_timeout_seconds: float = Field(default=10, gt=0)
    readiness_timeout_seconds: float = Field(default=2, gt=0)
    shutdown_grace_seconds: float = Field(default=20, ge=0)
    # Addresses whose X-Forwarded-* headers uvicorn trusts.
    forwarded_allow_ips: str = "127.0.0.1"

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
