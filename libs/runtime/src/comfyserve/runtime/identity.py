"""How a service takes part in authentication: the settings that reach the auth
service, the verifier that checks the credentials of calls it serves, and the
credential it presents on calls it makes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import structlog
from pydantic import Field, SecretStr

from comfyserve.runtime.auth import CredentialVerifier, GrpcAuth, credential_verifier
from comfyserve.runtime.grpc import insecure_channel
from comfyserve.runtime.settings import ServiceSettings

__all__ = [
    "AuthClientSettings",
    "CheckedServerSettings",
    "caller_verifier",
    "connect_auth",
]

log = structlog.get_logger(__name__)


class AuthClientSettings(ServiceSettings):
    """Settings of a service that checks credentials or presents its own; the
    subclass's prefix applies (`WORKFLOW_AUTH_GRPC_TARGET`, ...)."""

    auth_grpc_target: str = "127.0.0.1:50053"
    auth_issuer: str = Field(default="comfyserve-auth", min_length=1)
    auth_audience: str = Field(default="comfyserve", min_length=1)
    auth_timeout_seconds: float = Field(default=5.0, gt=0)
    # A revoked key is refused everywhere within this time.
    api_key_cache_seconds: float = Field(default=4.0, ge=0, le=5)
    # A retired signing key stops verifying within this time.
    jwks_max_age_seconds: float = Field(default=300.0, gt=0, le=3600)
    # This service's own key, as listed in the auth service's
    # AUTH_SERVICE_KEYS; sent with every call it makes to another service.
    service_key: SecretStr | None = None

    @property
    def service_credential(self) -> str | None:
        return None if self.service_key is None else self.service_key.get_secret_value()


class CheckedServerSettings(AuthClientSettings):
    """Settings of a gRPC server that checks its callers' credentials."""

    # Every call but health and reflection must carry a credential the auth
    # service vouches for; off only where the service is tested alone.
    require_credentials: bool = True


@asynccontextmanager
async def connect_auth(
    settings: AuthClientSettings,
) -> AsyncIterator[CredentialVerifier]:
    """A verifier backed by the auth service: access tokens checked locally
    against its keys, API keys by asking it (cached briefly)."""
    channel = insecure_channel(settings.auth_grpc_target)
    try:
        yield credential_verifier(
            GrpcAuth(channel, timeout_s=settings.auth_timeout_seconds),
            issuer=settings.auth_issuer,
            audience=settings.auth_audience,
            key_ttl_s=settings.api_key_cache_seconds,
            jwks_max_age_s=settings.jwks_max_age_seconds,
        )
    finally:
        await channel.close()


@asynccontextmanager
async def caller_verifier(
    settings: CheckedServerSettings,
) -> AsyncIterator[CredentialVerifier | None]:
    """The verifier `serve_grpc` checks every call with; None, loudly, where
    credentials are not required."""
    if not settings.require_credentials:
        log.warning("grpc.credentials_not_checked")
        yield None
        return
    async with connect_auth(settings) as verifier:
        yield verifier
