"""Configuration, read from `AUTH_*` environment variables."""

from __future__ import annotations

import re
from enum import StrEnum

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from comfyserve.auth.keys.secret import API_KEY_PREFIX
from comfyserve.runtime.database import SchemaName, asyncpg_dsn
from comfyserve.runtime.settings import ServiceSettings

_SERVICE_NAME = re.compile(r"^[a-z][a-z0-9-]{0,62}$")
# Taken at face value in development only; anywhere else it is refused.
PLACEHOLDER_SECRET = "development-only-key-encryption-secret"
_MIN_SECRET_CHARS = 32
# csk_ and 22 base64url characters: the 128 random bits every key must have.
_MIN_SERVICE_KEY_CHARS = len(API_KEY_PREFIX) + 22


class Environment(StrEnum):
    DEVELOPMENT = "development"
    PRODUCTION = "production"


class Settings(ServiceSettings):
    # Secrets are among the inputs; a settings error must not print them.
    model_config = SettingsConfigDict(env_prefix="AUTH_", hide_input_in_errors=True)

    database_url: str = "postgresql://comfyserve:comfyserve@127.0.0.1:15432/comfyserve"
    schema_: SchemaName = Field(default="auth", alias="AUTH_SCHEMA")
    grpc_port: int = Field(default=50053, ge=0, le=65535)
    metrics_port: int = Field(default=9105, ge=0, le=65535)
    environment: Environment = Environment.PRODUCTION

    issuer: str = Field(default="comfyserve-auth", min_length=1)
    audience: str = Field(default="comfyserve", min_length=1)
    access_token_minutes: int = Field(default=15, ge=1, le=24 * 60)
    refresh_token_days: int = Field(default=30, ge=1, le=365)
    # Encrypts the signing keys' private halves in the database.
    key_encryption_secret: SecretStr = SecretStr(PLACEHOLDER_SECRET)

    # argon2id parameters; a stored hash made with others is redone at login.
    password_time_cost: int = Field(default=3, ge=1, le=20)
    password_memory_kib: int = Field(default=65536, ge=8 * 1024, le=4 * 1024 * 1024)
    password_parallelism: int = Field(default=4, ge=1, le=64)
    # Hashes computed at once; each holds `password_memory_kib` of memory.
    password_hash_concurrency: int = Field(default=4, ge=1, le=256)

    login_failure_window_seconds: int = Field(default=900, ge=1)
    login_max_failures_per_account: int = Field(default=5, ge=1)
    login_max_failures_per_address: int = Field(default=20, ge=1)

    max_keys_per_tenant: int = Field(default=100, ge=1)
    # `name=csk_...` pairs, comma-separated: the keys our own services use.
    service_keys: SecretStr = SecretStr("")

    bootstrap_admin_email: str = "admin@comfyserve.local"
    # Unset: bootstrap generates one and prints it once.
    bootstrap_admin_password: SecretStr | None = None

    sweep_interval_seconds: float = Field(default=300.0, gt=0)

    @field_validator("service_keys")
    @classmethod
    def _check_service_keys(cls, value: SecretStr) -> SecretStr:
        _parse_service_keys(value.get_secret_value())
        return value

    @model_validator(mode="after")
    def _refuse_placeholder(self) -> Settings:
        secret = self.key_encryption_secret.get_secret_value()
        if self.environment is Environment.DEVELOPMENT:
            return self
        if secret == PLACEHOLDER_SECRET or len(secret) < _MIN_SECRET_CHARS:
            raise ValueError(
                "AUTH_KEY_ENCRYPTION_SECRET must be set to a secret of at least "
                f"{_MIN_SECRET_CHARS} characters outside development"
            )
        return self

    @property
    def service_credentials(self) -> dict[str, str]:
        """Service name to its key's secret."""
        return _parse_service_keys(self.service_keys.get_secret_value())

    @property
    def asyncpg_dsn(self) -> str:
        return asyncpg_dsn(self.database_url)


def _parse_service_keys(listed: str) -> dict[str, str]:
    keys: dict[str, str] = {}
    for pair in (item.strip() for item in listed.split(",")):
        if not pair:
            continue
        name, sep, secret = (part.strip() for part in pair.partition("="))
        # Messages name the service, never the secret.
        if not sep or not _SERVICE_NAME.fullmatch(name):
            raise ValueError("service keys are `name=csk_...` pairs of plain names")
        if name in keys:
            raise ValueError(f"service {name!r} is listed twice")
        if not secret.startswith(API_KEY_PREFIX) or len(secret) < (
            _MIN_SERVICE_KEY_CHARS
        ):
            raise ValueError(
                f"the key of service {name!r} must start with {API_KEY_PREFIX} "
                "and carry at least 128 random bits"
            )
        keys[name] = secret
    return keys
